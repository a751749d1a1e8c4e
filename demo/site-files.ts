/** Where the site keeps what the page fetches, relative to index.html: demo/build.ts writes them, demo/main.ts reads them. */
export const SITE_FILES = {
  wasm: "v86.wasm",
  guest: "guests/vtd-test.elf",
  /** Which guests this build holds (GuestManifest). */
  manifest: "guests/index.json",
  linux: {
    bzImage: "guests/linux/bzImage",
    initrd: "guests/linux/initrd.img",
    /** Debian's SeaBIOS and its VGA BIOS (the Linux guest boots through a BIOS). */
    bios: "guests/linux/bios.bin",
    vgaBios: "guests/linux/vgabios-stdvga.bin",
  },
} as const;

export interface GuestManifest {
  /** True when the site holds the Linux guest; else why not. */
  linux: true | string;
}
