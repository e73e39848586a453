import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The package root: the nearest directory above this module with a package.json (this file runs
 * as src/package-root.ts under a TypeScript runner or as dist/src/package-root.js, and the package
 * may be a clone or an installed copy). Where lbd finds its native binding, its program
 * declarations and, for the lab and bench, the repository's files.
 */
export const PACKAGE_ROOT = ((): string => {
  for (let d = __dirname; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) return path.resolve(__dirname, '..');
  }
})();
