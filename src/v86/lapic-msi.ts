/**
 * MSI delivery for v86, which has no MSI: the message's vector is set pending in the local APIC's
 * IRR inside wasm memory (v86's APIC struct: 46 dwords; IRR at dword 16, ISR 24, TMR 32) and
 * `handle_irqs` is called. Only at a safe point (safe-point.ts), never from an MMIO handler.
 *
 * Message format (Intel SDM vol. 3 §11.11): address 0xFEExxxxx (destination id in 19:12, one CPU
 * here so it is not checked), data bits 7:0 vector, 10:8 delivery mode, 15 trigger mode.
 */
import { MSI_ADDRESS_BASE } from "../spec/platform.ts";
import type { V86Cpu } from "./internals.ts";

export { MSI_ADDRESS_BASE };
export const MSI_ADDRESS_MASK = 0xfff0_0000;
const APIC_DWORDS = 46;
const APIC_IRR = 16;
const APIC_TMR = 32;

export type MsiOutcome = "delivered" | "not-an-interrupt-address" | "unsupported-delivery-mode" | "illegal-vector";

export function isInterruptAddress(address: bigint | number): boolean {
  const a = BigInt(address);
  return a >> 32n === 0n && (Number(a) & MSI_ADDRESS_MASK) >>> 0 === MSI_ADDRESS_BASE;
}

export function deliverMsiToLapic(cpu: V86Cpu, address: bigint | number, data: number): MsiOutcome {
  if (!isInterruptAddress(address)) return "not-an-interrupt-address";
  const deliveryMode = (data >>> 8) & 7;
  // Fixed (0) and lowest priority (1) both reach the only CPU; SMI, NMI, INIT, ExtINT are not modelled.
  if (deliveryMode > 1) return "unsupported-delivery-mode";
  const vector = data & 0xff;
  if (vector < 16) return "illegal-vector";
  const apic = new Int32Array(cpu.wasm_memory.buffer, cpu.get_apic_addr(), APIC_DWORDS);
  const word = vector >>> 5;
  const bit = 1 << (vector & 31);
  apic[APIC_IRR + word]! |= bit;
  const level = (data & 0x8000) !== 0;
  if (level) apic[APIC_TMR + word]! |= bit;
  else apic[APIC_TMR + word]! &= ~bit;
  cpu.handle_irqs();
  return "delivered";
}
