/**
 * SERVICE arguments: how a name or VIP:PORT[/PROTO] picks one service. One rule for both ends of
 * the admin socket — the daemon resolves it against its running config, the CLI against a list
 * answer (to find the service before asking for more) — so both accept and refuse the same
 * references with the same message.
 */
import { didYouMean } from '../../config/suggest';
import { AdminError, ServiceView } from './protocol';

/** What resolving needs of a service: a config entry and a list answer's view both have it. */
interface Named {
  name: string;
  vip: string;
  port: number;
  protocol: string;
}

/**
 * SERVICE is a name, or VIP:PORT[/PROTO] (PROTO tcp when omitted, unless only a udp service
 * has that VIP:PORT). Throws E_NO_SERVICE with the list of services and a suggestion.
 */
export function resolveServiceRef<S extends Named>(services: readonly S[], ref: string, keyOf: (s: S) => string): S {
  const byName = services.find((s) => s.name === ref);
  if (byName) return byName;
  const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)(?:\/(tcp|udp))?$/i.exec(ref);
  if (m) {
    const [, vip, port, proto] = m;
    const matches = services.filter((s) => s.vip === vip && s.port === Number(port) && (!proto || s.protocol === proto.toLowerCase()));
    const pick = matches.find((s) => s.protocol === (proto?.toLowerCase() ?? 'tcp')) ?? (matches.length === 1 ? matches[0] : undefined);
    if (pick) return pick;
  }
  const guess = didYouMean(ref, [...services.map((s) => s.name), ...services.map(keyOf)]);
  const hint = guess !== undefined ? `; did you mean "${guess}"?` : '';
  const list = services.map((s) => `${s.name} (${keyOf(s)})`).join(', ');
  throw new AdminError('E_NO_SERVICE', `unknown service "${ref}"${hint} (services: ${list || 'none'})`);
}

/**
 * SERVICE against the daemon's list answer (the daemon checks again when the request names it).
 * Services removed from the config and still draining are not in the config either, so they are
 * not found here.
 */
export function resolveServiceView(services: readonly ServiceView[], ref: string): ServiceView {
  return resolveServiceRef(
    services.filter((s) => !s.removed),
    ref,
    (s) => s.key,
  );
}
