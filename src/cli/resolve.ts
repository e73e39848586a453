/** SERVICE arguments against the daemon's list answer (CLI side; the daemon checks again). */
import { didYouMean } from '../config/suggest';
import type { ServiceView } from '../control/admin';
import { LbdError } from '../errors';

export function resolveServiceView(services: ServiceView[], ref: string): ServiceView {
  const live = services.filter((s) => !s.removed);
  const byName = live.find((s) => s.name === ref);
  if (byName) return byName;
  const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)(?:\/(tcp|udp))?$/i.exec(ref);
  if (m) {
    const matches = live.filter((s) => s.vip === m[1] && s.port === Number(m[2]) && (!m[3] || s.protocol === m[3].toLowerCase()));
    const pick = matches.find((s) => s.protocol === (m[3]?.toLowerCase() ?? 'tcp')) ?? (matches.length === 1 ? matches[0] : undefined);
    if (pick) return pick;
  }
  const guess = didYouMean(ref, [...live.map((s) => s.name), ...live.map((s) => s.key)]);
  throw new LbdError(
    'E_NO_SERVICE',
    `unknown service "${ref}"${guess ? `; did you mean "${guess}"?` : ''} (services: ${live.map((s) => `${s.name} (${s.key})`).join(', ') || 'none'})`,
  );
}
