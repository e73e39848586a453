/** The SVG chart of a benchmark run (bench/results/latest.svg), drawn from its summary. */
import { summarize, type Results } from './report';

const COLORS: Record<string, string> = {
  direct: '#7f7f7f',
  'lbd-native': '#2ca02c',
  'lbd-native-bp': '#17becf',
  'lbd-ts': '#98df8a',
  nftables: '#1f77b4',
  haproxy: '#ff7f0e',
};

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export interface TextStyle {
  size?: number;
  anchor?: string;
  weight?: string;
  fill?: string;
}

/** One <text> element (its text escaped; a coordinate with a fraction to one decimal). */
export function svgText(x: number, y: number, t: string, o: TextStyle = {}): string {
  const n = (v: number): string => (Number.isInteger(v) ? String(v) : v.toFixed(1));
  return `<text x="${n(x)}" y="${n(y)}" font-size="${o.size ?? 12}" text-anchor="${o.anchor ?? 'start'}"${o.weight ? ` font-weight="${o.weight}"` : ''} fill="${o.fill ?? '#222'}">${xml(t)}</text>`;
}

/** Two horizontal bar panels: req/s at c32, and added CPU ns per forwarded packet (steady max, SYN max). */
export function svgChart(r: Results): string {
  const s = r.summary ?? summarize(r);
  const names = r.scenarios.map((x) => x.name).filter((n) => n !== 'baseline');
  const W = 760;
  const labelW = 110;
  const barMax = W - labelW - 150;
  const rowH = 22;
  const out: string[] = [];
  let y = 0;
  const text = (x: number, yy: number, t: string, o: TextStyle = {}) => out.push(svgText(x, yy, t, o));
  y += 22;
  text(10, y, `lbd bench — ${r.machine.nproc} × ${r.machine.cpuModel}, Linux ${r.machine.kernel}, ${r.machine.date.slice(0, 10)}`, {
    size: 14,
    weight: 'bold',
  });

  // panel 1: req/s c32
  y += 28;
  text(10, y, 'HTTP requests/s, wrk -c32 (median; higher is better)', { weight: 'bold' });
  y += 8;
  const rpsMax = Math.max(1, ...names.map((n) => s.http[n]?.rpsC32 ?? 0).filter(Number.isFinite));
  for (const n of names) {
    y += rowH;
    text(labelW - 8, y - 6, n, { anchor: 'end' });
    const h = s.http[n];
    if (r.unavailable[n] || !h || !Number.isFinite(h.rpsC32)) {
      text(labelW, y - 6, r.unavailable[n] ? `unavailable: ${r.unavailable[n].slice(0, 90)}` : 'not measured', { fill: '#999', size: 11 });
      continue;
    }
    const w = Math.max(1, (h.rpsC32 / rpsMax) * barMax);
    out.push(`<rect x="${labelW}" y="${y - rowH + 4}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${COLORS[n] ?? '#555'}"/>`);
    text(
      labelW + w + 6,
      y - 6,
      `${Math.round(h.rpsC32).toLocaleString('en-US')}${Number.isFinite(h.rpsC32VsNft) ? `  (${h.rpsC32VsNft.toFixed(2)}× nft)` : ''}`,
    );
  }

  // panel 2: added CPU per forwarded packet
  y += 36;
  text(10, y, 'CPU added by the balancer per forwarded packet, ns (median; lower is better)', { weight: 'bold' });
  y += 8;
  const tests = ['steady-max', 'syn-max'];
  const pk = names.filter((n) => s.packets[n] || r.unavailable[n]).filter((n) => n !== 'direct' && n !== 'haproxy');
  const cpuMax = Math.max(1, ...pk.flatMap((n) => tests.map((t) => s.packets[n]?.[t]?.addedNsPerPkt ?? 0)).filter(Number.isFinite));
  for (const n of pk) {
    for (const t of tests) {
      y += rowH;
      text(labelW - 8, y - 6, `${n} ${t === 'steady-max' ? 'steady' : 'SYN'}`, { anchor: 'end', size: 11 });
      const p = s.packets[n]?.[t];
      if (r.unavailable[n] || !p || !Number.isFinite(p.addedNsPerPkt)) {
        text(labelW, y - 6, r.unavailable[n] ? 'unavailable' : 'not measured', { fill: '#999' });
        continue;
      }
      const w = Math.max(1, (Math.max(0, p.addedNsPerPkt) / cpuMax) * barMax);
      out.push(
        `<rect x="${labelW}" y="${y - rowH + 4}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${COLORS[n] ?? '#555'}"${t === 'syn-max' ? ' fill-opacity="0.6"' : ''}/>`,
      );
      text(
        labelW + w + 6,
        y - 6,
        `${Math.round(p.addedNsPerPkt)} ns${Number.isFinite(p.addedVsNft) ? `  (${p.addedVsNft.toFixed(2)}× nft)` : ''}, ${Math.round(p.forwardedPps / 1000)}k pps`,
      );
    }
  }
  y += 20;
  text(10, y, 'generator at its max rate; added = (generator + balancer + ksoftirqd run time) ÷ forwarded − baseline', { size: 10, fill: '#666' });
  y += 10;
  const H = y + 10;
  return svgDocument(W, H, out);
}

/** A standalone SVG of W × H on white around the given elements (this chart and the soak's plot). */
export function svgDocument(W: number, H: number, elements: readonly string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    ...elements,
    '</svg>',
    '',
  ].join('\n');
}
