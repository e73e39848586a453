/**
 * Every error lbd reports on purpose is an LbdError with a stable code, so that scripts and
 * tests can tell failures apart without matching message text.
 */
export class LbdError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** One problem found in a config file, located as precisely as the YAML allows. */
export interface ConfigIssue {
  file: string;
  line: number; // 1-based; 0 when the problem is not tied to a place (e.g. unreadable file)
  col: number; // 1-based
  path: string; // e.g. services[0].scheduler
  message: string;
}

export function formatConfigIssue(i: ConfigIssue): string {
  const where = i.line > 0 ? `${i.file}:${i.line}:${i.col}` : i.file;
  return i.path ? `${where} ${i.path}: ${i.message}` : `${where}: ${i.message}`;
}

export class ConfigError extends LbdError {
  constructor(readonly issues: ConfigIssue[]) {
    super('E_CONFIG', issues.map(formatConfigIssue).join('\n'));
  }
}

export class CaptureError extends LbdError {
  constructor(message: string) {
    super('E_CAPTURE', message);
  }
}

/** No native binding loads: lbd cannot capture or send (src/dataplane/binding.ts). */
export class BindingError extends LbdError {
  constructor(message: string) {
    super('E_BINDING', message);
  }
}

export class HostSetupError extends LbdError {
  constructor(message: string) {
    super('E_HOST', message);
  }
}

export class UnknownSchedulerError extends LbdError {
  constructor(name: string, known: readonly string[]) {
    super('E_SCHEDULER', `unknown scheduler "${name}" (${known.join(', ')})`);
  }
}
