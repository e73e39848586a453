// Writes the scdoc sources of lbd(8) and lb.yaml(5) into DIR (default dist/man): the hand-written
// templates of docs/man/*.scd.in with their generated parts filled in — lbd(8)'s commands from the
// CLI's usage texts (src/cli/manual.ts), lb.yaml(5)'s keys from the config field table
// (src/config/manual.ts). Needs the TypeScript build (dist/). scripts/build-man.sh renders them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const out = path.resolve(process.argv[2] ?? path.join(root, 'dist/man'));
const { lbdManual } = require(path.join(root, 'dist/src/cli/manual.js'));
const { lbYamlManual } = require(path.join(root, 'dist/src/config/manual.js'));
const template = (name) => fs.readFileSync(path.join(root, 'docs/man', `${name}.scd.in`), 'utf8');

fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'lbd.8.scd'), lbdManual(template('lbd.8')));
fs.writeFileSync(path.join(out, 'lb.yaml.5.scd'), lbYamlManual(template('lb.yaml.5')));
