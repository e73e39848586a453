import * as fs from 'node:fs';

/**
 * Log lines for the systemd journal: when lbd's stdout is the journal (systemd sets
 * JOURNAL_STREAM to its device:inode), each line starts with its syslog priority, `<4>` for a
 * warning, which journald strips and records (sd-daemon(3)), so that `journalctl -p warning`
 * finds lbd's warnings; elsewhere the lines stay plain JSON.
 */

/** pino's level numbers → syslog priorities (trace and debug: debug; fatal: crit). */
export function syslogPriority(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

/** Is stdout (fd 1) the stream JOURNAL_STREAM names? */
export function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env, stat: () => { dev: number; ino: number } = () => fs.fstatSync(1)): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = stat();
    return String(st.dev) === m[1] && String(st.ino) === m[2];
  } catch {
    return false;
  }
}

/** One JSON log line with its priority prefix (the level read from the line pino wrote). */
export function withPriority(line: string): string {
  const m = /"level":(\d+)/.exec(line);
  return `<${syslogPriority(m ? Number(m[1]) : 30)}>${line}`;
}

/** A pino destination writing to `out` with priority prefixes. */
export function journalDestination(out: { write(s: string): unknown } = process.stdout): { write(s: string): void } {
  return {
    write(s: string) {
      out.write(withPriority(s));
    },
  };
}
