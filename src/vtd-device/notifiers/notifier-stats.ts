/** What the notifier machinery did: for tests, benchmarks and the summary (IommuNotifiers.stats). */
export class NotifierStats {
  /** Address-space syncs by cause (one per space synced). */
  pageSyncs = 0;
  domainSyncs = 0;
  globalSyncs = 0;
  /** Unmap-everything-and-replay, for context invalidations, SRTP, TE and reset. */
  contextSyncs = 0;
  /** Paging entries read by sync walks. */
  entriesWalked = 0;
  /** Entries a walk found unusable (reserved bits, outside RAM): reported as not mapped. */
  badEntries = 0;
  mapEvents = 0;
  unmapEvents = 0;
  deviceIotlbUnmapEvents = 0;
  /** Notifiers that threw. */
  notifierErrors = 0;
  /** Syncs cut by a bound (the space was then unmapped whole), and by cause (WalkLimitReport). */
  walkLimitHits = 0;
  sharedTableCuts = 0;
  tableLimitCuts = 0;
  eventBudgetCuts = 0;
  /** Scalable mode: PASID-cache invalidations that found a space's entry changed (unmap all and replay, or rebind). */
  pasidEntrySyncs = 0;
  /** The nested model (nested-types.ts): events told to nested notifiers; their errors count in `notifierErrors`. */
  hwptAllocEvents = 0;
  hwptDetachEvents = 0;
  hwptInvalidateEvents = 0;
}
