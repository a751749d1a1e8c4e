/** Small DOM helpers for the panels: build elements with text (never HTML strings), replace children. */

export interface Props {
  class?: string;
  text?: string;
  title?: string;
  attrs?: Record<string, string>;
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined) node.textContent = props.text;
  if (props.title) node.title = props.title;
  for (const [name, value] of Object.entries(props.attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

/** A table with a header row and `rows` (each cell text, or a node). */
export function table(headers: string[], rows: (string | Node)[][], options: { class?: string; empty?: string } = {}): HTMLElement {
  if (rows.length === 0) return el("p", { class: "empty", text: options.empty ?? "(empty)" });
  const head = el("tr", {}, ...headers.map((h) => el("th", { text: h, attrs: { scope: "col" } })));
  const body = rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))));
  return el("table", options.class ? { class: options.class } : {}, el("thead", {}, head), el("tbody", {}, ...body));
}

/**
 * Replaces what `parent` shows. It reads no layout (no scroll position, no size): a read after
 * another panel's write would force the browser to lay the page out again, once per panel, and
 * that time is taken from the guest. The browser keeps a scroll position that still fits.
 */
export function show(parent: HTMLElement, ...children: Node[]): void {
  parent.replaceChildren(...children);
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`demo page: no element #${id} in index.html`);
  return node as T;
}

export const hex = (v: number | bigint, digits = 0) => `0x${v.toString(16).padStart(digits, "0")}`;
