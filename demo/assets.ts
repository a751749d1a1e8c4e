/** Fetching what the page needs from beside it, each failure naming the file. */
import { SITE_FILES, type GuestManifest } from "./site-files.ts";
import type { GuestAssets } from "./session.ts";

export async function fetchBytes(path: string): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(path);
  } catch (error) {
    throw new Error(`fetching ${path} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!response.ok) throw new Error(`fetching ${path}: HTTP ${response.status} (build the site with npm run build:demo)`);
  return new Uint8Array(await response.arrayBuffer());
}

/** Which guests the site holds; a missing or bad manifest means the C test guest only. */
export async function fetchManifest(): Promise<GuestManifest> {
  try {
    const manifest = JSON.parse(new TextDecoder().decode(await fetchBytes(SITE_FILES.manifest))) as Partial<GuestManifest>;
    return { linux: manifest.linux === true ? true : typeof manifest.linux === "string" ? manifest.linux : `${SITE_FILES.manifest} does not say` };
  } catch (error) {
    return { linux: error instanceof Error ? error.message : String(error) };
  }
}

/** The Linux guest's files (about 2.5 MB), fetched the first time they are needed. */
export async function fetchLinux(): Promise<NonNullable<GuestAssets["linux"]>> {
  const f = SITE_FILES.linux;
  const [bzImage, initrd, bios, vgaBios] = await Promise.all([fetchBytes(f.bzImage), fetchBytes(f.initrd), fetchBytes(f.bios), fetchBytes(f.vgaBios)]);
  return { bzImage, initrd, bios, vgaBios };
}
