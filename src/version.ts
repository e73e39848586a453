// package.json is the one place the version is written; read at run time, not copied into dist/.
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const VERSION: string = require('../../package.json').version;
