import * as path from 'node:path';

/**
 * Where lbd keeps its runtime files (the admin socket, the state file): the directory systemd
 * made for the service (RuntimeDirectory=lbd gives RUNTIME_DIRECTORY=/run/lbd; with several, the
 * first), else /run/lbd. A relative or empty value is not a directory systemd gave: ignored.
 */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const first = env.RUNTIME_DIRECTORY?.split(':')[0];
  return first && path.isAbsolute(first) ? first : '/run/lbd';
}
