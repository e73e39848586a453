/** What the host says about its network interfaces (in lbd's network namespace): IPv4 addresses and MTUs. */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

export interface InterfaceAddress {
  iface: string;
  address: string;
  /** a.b.c.d/len (/32 when the host reports no netmask). */
  cidr: string;
}

/** Every IPv4 address configured on this host, with the interface it is on, in the host's order. */
export function ipv4Addresses(): InterfaceAddress[] {
  const out: InterfaceAddress[] = [];
  for (const [iface, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4') out.push({ iface, address: a.address, cidr: a.cidr ?? `${a.address}/32` });
  }
  return out;
}

/** Every IPv4 address configured on this host. */
export function localAddresses(): Set<string> {
  return new Set(ipv4Addresses().map((a) => a.address));
}

/** The first IPv4 address of an interface, or undefined when it has none. */
export function interfaceAddress(name: string): string | undefined {
  return ipv4Addresses().find((a) => a.iface === name)?.address;
}

/** The MTU of an interface, from sysfs (1500 when it cannot be read). */
export function interfaceMtu(name: string): number {
  try {
    return Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim()) || 1500;
  } catch {
    return 1500;
  }
}
