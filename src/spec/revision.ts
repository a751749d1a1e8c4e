/**
 * The one pinned revision of the Intel VT-d specification this project follows.
 * Every spec reference in the code is written `VT-d §x.y` and means this revision.
 */
export const SPEC_REVISION = "Intel Virtualization Technology for Directed I/O, Architecture Specification rev 5.10 (D51397-018)";
