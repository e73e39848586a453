/** A recording stand-in for the announcer's host (host/announce.ts AnnounceHost): the TAP, keepers and routes in memory. */
import type { AnnounceHost, KeeperProcess } from '../../src/host/announce';

export class FakeAnnounceHost implements AnnounceHost {
  readonly log: string[] = [];
  readonly routes = new Set<string>();
  readonly keepers: FakeKeeper[] = [];
  private nextFd = 40;
  checkKeeper(): void {}
  openTap(name: string): number {
    this.log.push(`open ${name}`);
    return this.nextFd++;
  }
  closeTap(fd: number): void {
    this.log.push(`close ${fd}`);
  }
  spawnKeeper(fd: number, hangTimeoutMs: number): KeeperProcess {
    const k = new FakeKeeper(fd, hangTimeoutMs);
    this.keepers.push(k);
    this.log.push(`keeper fd ${fd} hang ${hangTimeoutMs}`);
    return k;
  }
  async ip(args: string[]): Promise<void> {
    this.record(args);
  }
  async routesVia(dev: string, table: number): Promise<string[]> {
    this.log.push(`routes via ${dev} table ${table}`);
    return [...this.routes].map((r) => r.replace('/32', ''));
  }
  private record(args: string[]): void {
    this.log.push(`ip ${args.join(' ')}`);
    if (args[0] !== 'route') return;
    if (args[1] === 'replace') this.routes.add(args[2]);
    if (args[1] === 'del') this.routes.delete(args[2]);
  }
}

export class FakeKeeper implements KeeperProcess {
  readonly lines: string[] = [];
  ended = false;
  private exit: ((code: number | null, signal: string | null) => void) | null = null;
  readonly pid = 4242;
  constructor(
    readonly fd: number,
    readonly hangMs: number,
  ) {}
  write(line: string, done?: () => void): void {
    this.lines.push(line);
    done?.();
  }
  end(): void {
    this.ended = true;
  }
  onExit(fn: (code: number | null, signal: string | null) => void): void {
    this.exit = fn;
  }
  /** The keeper lets go on its own (a hang timeout). */
  die(): void {
    this.exit?.(0, null);
  }
}
