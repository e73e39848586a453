/**
 * The scanner behind test/unit/programs.test.ts: finds every place a source file starts a
 * program and reports what bypasses src/host/programs.ts or names a program that
 * src/host/programs.json does not declare. Works on text, so the test can also prove it catches
 * a synthetic offender.
 *
 *  - TypeScript/JavaScript (parsed with the TypeScript compiler): any import or require of
 *    child_process outside the helper; the string-literal program of a call to the helper, the
 *    lab or child_process, and of a command array (`['wrk', …]`) passed to one or given as `cmd:`;
 *    an `sh -c` script in such an array is scanned as shell.
 *  - Shell: every command word that is not a builtin, a keyword, a function of the script, a
 *    variable expansion or a path of the repository.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

export interface Finding {
  file: string;
  line: number;
  rule: 'child_process' | 'undeclared' | 'execPath';
  message: string;
}

export const HELPER = 'src/host/programs.ts';
export const SCANNED_DIRS = ['src', 'lab', 'test', 'bench', 'scripts'];
const EXTENSIONS = ['.ts', '.mjs', '.js', '.cjs', '.sh'];
const SKIPPED_DIRS = new Set(['node_modules', 'dist', 'build']);
const CHILD_PROCESS = new Set(['child_process', 'node:child_process']);

// calls whose first argument is the program: the helper's, the lab's, child_process's own
const PROGRAM_FIRST = new Set([
  'programPath',
  'program',
  'declaredPath',
  'runSync',
  'runSyncOk',
  'run',
  'runOk',
  'spawnProgram',
  'cmdOut',
  'spawn',
  'spawnSync',
  'execFile',
  'execFileSync',
  'fork',
]);
// child_process calls that take a shell command line
const SHELL_LINE = new Set(['exec', 'execSync']);
// calls that take a command array (program first): the lab's exec/tryExec/spawn, netnsArgs, runInLab, wrappers of them
const COMMAND_ARRAY = /exec|spawn|InLab$|^netnsArgs$|^background$/i;
// …but not those whose array holds the arguments of a program named before it
const ARGUMENT_ARRAY = new Set(['spawnProgram', 'spawnSync', 'execFile', 'execFileSync', 'fork']);

const SH_BUILTINS = new Set(
  (
    '. : [ alias bg bind break builtin caller cd command compgen complete continue declare dirs disown echo enable eval exec exit export ' +
    'false fc fg getopts hash help history jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly return ' +
    'set shift shopt source suspend test times trap true type typeset ulimit umask unalias unset wait'
  ).split(' '),
);
const SH_KEYWORDS = new Set([
  'if',
  'then',
  'else',
  'elif',
  'fi',
  'do',
  'done',
  'while',
  'until',
  'for',
  'select',
  'case',
  'esac',
  'in',
  'function',
  'time',
  '{',
  '}',
  '!',
  '[[',
  ']]',
]);

function finding(file: string, line: number, rule: Finding['rule'], message: string): Finding {
  return { file, line, rule, message };
}

function undeclared(file: string, line: number, name: string, how: string): Finding {
  return finding(file, line, 'undeclared', `${how} "${name}", which src/host/programs.json does not declare`);
}

// ───────────────────────────── shell ─────────────────────────────

interface Word {
  text: string;
  /** starts with an expansion ($VAR, ${…}, $(…), `…`): the program is not known statically */
  dynamic: boolean;
  line: number;
}
type Token = { kind: 'word'; word: Word } | { kind: 'op'; op: string; line: number };

/** The text up to the bracket that closes the one just before `i` (quotes and nesting respected); returns [inner, index after]. */
function closing(text: string, i: number, open: string, close: string): [string, number] {
  let depth = 1;
  let j = i;
  while (j < text.length) {
    const c = text[j];
    if (c === '\\') j += 2;
    else if (c === "'") j = text.indexOf("'", j + 1) + 1 || text.length;
    else if (c === '"') {
      j++;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      j++;
    } else {
      if (c === open) depth++;
      else if (c === close && --depth === 0) return [text.slice(i, j), j + 1];
      j++;
    }
  }
  return [text.slice(i), text.length];
}

/** Tokens of a shell text; the insides of $(…), `…` and <(…) go to `subs`, scanned as scripts of their own. */
function tokenize(text: string, subs: { text: string; line: number }[], firstLine = 1): Token[] {
  const out: Token[] = [];
  let line = firstLine;
  let word: Word | null = null;
  const heredocs: string[] = [];
  const lineAt = (i: number) => firstLine + (text.slice(0, i).match(/\n/g)?.length ?? 0);
  const part = (s: string, dynamic: boolean) => {
    if (!word) word = { text: '', dynamic, line };
    word.text += s;
  };
  const end = () => {
    if (word) out.push({ kind: 'word', word });
    word = null;
  };
  // $… at i: appends what it expands to (a placeholder) and returns the index after it
  const dollar = (i: number): number => {
    if (text.startsWith('$((', i)) {
      const [, after] = closing(text, i + 3, '(', ')');
      part('0', true);
      return after + 1;
    }
    if (text[i + 1] === '(') {
      const [inner, after] = closing(text, i + 2, '(', ')');
      subs.push({ text: inner, line: lineAt(i + 2) });
      part('X', true);
      return after;
    }
    if (text[i + 1] === '{') {
      const [, after] = closing(text, i + 2, '{', '}');
      part('X', true);
      return after;
    }
    const m = /^\$([A-Za-z_]\w*|[0-9@*#?$!-])/.exec(text.slice(i));
    if (m) {
      part('X', true);
      return i + m[0].length;
    }
    part('$', false);
    return i + 1;
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') {
      end();
      out.push({ kind: 'op', op: '\n', line });
      line++;
      i++;
      while (heredocs.length) {
        const delim = heredocs.shift()!;
        for (;;) {
          const nl = text.indexOf('\n', i);
          const l = text.slice(i, nl < 0 ? text.length : nl);
          i = nl < 0 ? text.length : nl + 1;
          line++;
          if (l.trim() === delim || nl < 0) break;
        }
      }
    } else if (c === ' ' || c === '\t') {
      end();
      i++;
    } else if (c === '#' && !word) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl;
    } else if (c === '\\') {
      if (text[i + 1] === '\n') line++;
      else part(text[i + 1] ?? '', false);
      i += 2;
    } else if (c === "'") {
      const e = text.indexOf("'", i + 1);
      const s = text.slice(i + 1, e < 0 ? text.length : e);
      part(s, false);
      line += s.match(/\n/g)?.length ?? 0;
      i = e < 0 ? text.length : e + 1;
    } else if (c === '"') {
      if (!word) word = { text: '', dynamic: text[i + 1] === '$' || text[i + 1] === '`', line };
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\') {
          part(text[i + 1] ?? '', false);
          i += 2;
        } else if (text[i] === '$') i = dollar(i);
        else if (text[i] === '`') {
          const e = text.indexOf('`', i + 1);
          subs.push({ text: text.slice(i + 1, e), line: lineAt(i) });
          part('X', true);
          i = e + 1;
        } else {
          if (text[i] === '\n') line++;
          part(text[i], false);
          i++;
        }
      }
      i++;
    } else if (c === '$') {
      i = dollar(i);
    } else if (c === '`') {
      const e = text.indexOf('`', i + 1);
      subs.push({ text: text.slice(i + 1, e), line: lineAt(i) });
      part('X', true);
      i = e < 0 ? text.length : e + 1;
    } else if ((c === '<' || c === '>') && text[i + 1] === '(') {
      const [inner, after] = closing(text, i + 2, '(', ')');
      subs.push({ text: inner, line: lineAt(i + 2) });
      part('X', true);
      i = after;
    } else if (/[0-9]/.test(c) && !word && /^[0-9]+(>|<)/.test(text.slice(i))) {
      // 2>/dev/null, 2>&1: a redirection, not a word
      i += /^[0-9]+/.exec(text.slice(i))![0].length;
    } else if ('<>'.includes(c) || (c === '&' && text[i + 1] === '>')) {
      end();
      const m = /^(<<<|<<-?|&>>?|>>|>&|<&|>\||<>|<|>)/.exec(text.slice(i))!;
      i += m[0].length;
      if (m[0] === '>&' || m[0] === '<&') {
        const d = /^[0-9-]+/.exec(text.slice(i));
        if (d) {
          i += d[0].length;
          continue;
        }
      }
      if (m[0].startsWith('<<') && m[0] !== '<<<') {
        while (text[i] === ' ') i++;
        const d = /^(['"]?)([A-Za-z_]\w*)\1/.exec(text.slice(i));
        if (d) {
          heredocs.push(d[2]);
          i += d[0].length;
        }
        continue;
      }
      out.push({ kind: 'op', op: 'redirect', line });
    } else if (';&|()'.includes(c)) {
      end();
      const m = /^(;;|;&|&&|\|\||\|&|[;&|()])/.exec(text.slice(i))!;
      out.push({ kind: 'op', op: m[0], line });
      i += m[0].length;
    } else {
      part(c, false);
      i++;
    }
  }
  end();
  return out;
}

/** Commands a shell text runs: name and line, builtins and keywords included. */
export function shellCommands(text: string, firstLine = 1): { name: string; line: number }[] {
  const out: { name: string; line: number }[] = [];
  const subs: { text: string; line: number }[] = [];
  const toks = tokenize(text, subs, firstLine);
  let expect = true; // at a command position
  let skipTarget = false; // the word after a redirection
  let mode: 'none' | 'for' | 'case-subject' | 'case-pattern' | 'test' | 'function' = 'none';
  const record = (w: Word) => {
    if (w.dynamic) return;
    let name = w.text;
    if (name.includes('/')) {
      if (!path.isAbsolute(name)) return; // a script of the repository, run by path
      name = path.basename(name);
    }
    out.push({ name, line: w.line });
  };
  for (let k = 0; k < toks.length; k++) {
    const t = toks[k];
    if (t.kind === 'op') {
      if (t.op === 'redirect') skipTarget = true;
      else if (mode === 'case-pattern' && t.op === ')') {
        mode = 'none';
        expect = true;
      } else if (t.op === ';;' || t.op === ';&') {
        mode = 'case-pattern';
      } else if (mode === 'none' || t.op === '\n') {
        if (mode === 'function' || mode === 'case-subject') mode = 'none';
        expect = true;
      }
      continue;
    }
    const w = t.word;
    if (skipTarget) {
      skipTarget = false;
      continue;
    }
    if (mode === 'case-pattern') {
      if (w.text === 'esac') {
        mode = 'none';
        expect = false;
      }
      continue;
    }
    if (mode === 'case-subject') {
      if (w.text === 'in') mode = 'case-pattern';
      continue;
    }
    if (mode === 'for') {
      if (w.text === 'do') {
        mode = 'none';
        expect = true;
      }
      continue;
    }
    if (mode === 'test') {
      if (w.text === ']]') {
        mode = 'none';
        expect = false;
      }
      continue;
    }
    if (mode === 'function') {
      mode = 'none';
      continue;
    }
    if (!expect) continue;
    if (/^[A-Za-z_]\w*(\[[^\]]*\])?\+?=/.test(w.text)) continue; // an assignment before (or instead of) a command
    const next = toks[k + 1];
    if (next?.kind === 'op' && next.op === '(' && toks[k + 2]?.kind === 'op') {
      k += 2; // NAME() { …: a function definition
      continue;
    }
    if (SH_KEYWORDS.has(w.text)) {
      if (w.text === 'for' || w.text === 'select') mode = 'for';
      else if (w.text === 'case') mode = 'case-subject';
      else if (w.text === '[[') mode = 'test';
      else if (w.text === 'function') mode = 'function';
      else if (['fi', 'done', 'esac', '}', ']]'].includes(w.text)) expect = false;
      continue;
    }
    record(w);
    expect = false;
    // what these run is a command too: command -v NAME, exec NAME, env NAME, sh -c SCRIPT, trap SCRIPT
    const args: Word[] = [];
    for (let j = k + 1; j < toks.length && toks[j].kind === 'word'; j++) args.push((toks[j] as { word: Word }).word);
    if (['command', 'exec', 'env', 'nohup', 'xargs'].includes(w.text)) {
      const target = args.find((a) => !a.text.startsWith('-') && !/^[A-Za-z_]\w*=/.test(a.text));
      if (target) record(target);
    } else if ((w.text === 'sh' || w.text === 'bash') && args[0]?.text === '-c' && args[1]) {
      out.push(...shellCommands(args[1].text, args[1].line));
    } else if (w.text === 'trap' && args[0]) {
      out.push(...shellCommands(args[0].text, args[0].line));
    }
  }
  for (const s of subs) out.push(...shellCommands(s.text, s.line));
  return out;
}

/** Shell: commands that are neither declared nor builtins, keywords or the script's own functions. */
export function scanShell(file: string, text: string, declared: ReadonlySet<string>): Finding[] {
  const functions = new Set([...text.matchAll(/^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)/gm)].map((m) => m[1]));
  return shellCommands(text)
    .filter((c) => !declared.has(c.name) && !SH_BUILTINS.has(c.name) && !SH_KEYWORDS.has(c.name) && !functions.has(c.name))
    .map((c) => undeclared(file, c.line, c.name, 'runs'));
}

// ───────────────────────────── TypeScript / JavaScript ─────────────────────────────

function literalText(n: ts.Node | undefined): string | undefined {
  if (!n) return undefined;
  if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) return n.text;
  // a template with substitutions: their values are unknown, not programs
  if (ts.isTemplateExpression(n)) return n.head.text + n.templateSpans.map((s) => `X${s.literal.text}`).join('');
  return undefined;
}

const isExecPath = (n: ts.Node | undefined): boolean => !!n && ts.isPropertyAccessExpression(n) && n.getText() === 'process.execPath';

function calleeName(e: ts.Expression): string | undefined {
  if (ts.isIdentifier(e)) return e.text;
  if (ts.isPropertyAccessExpression(e)) return e.name.text;
  return undefined;
}

/** TypeScript or JavaScript source: child_process outside the helper, undeclared programs, process.execPath spawned. */
export function scanSource(file: string, text: string, declared: ReadonlySet<string>): Finding[] {
  const out: Finding[] = [];
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('.ts') ? ts.ScriptKind.TS : ts.ScriptKind.JS);
  const lineOf = (n: ts.Node) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  const childProcess = (spec: ts.Node | undefined, at: ts.Node) => {
    const m = literalText(spec);
    if (m !== undefined && CHILD_PROCESS.has(m) && file !== HELPER) {
      out.push(finding(file, lineOf(at), 'child_process', `imports ${m}: start programs through ${HELPER} (runSync, run, spawnProgram, netnsArgs)`));
    }
  };
  const programName = (n: ts.Node | undefined, how: string) => {
    if (isExecPath(n)) {
      out.push(finding(file, lineOf(n!), 'execPath', `${how} process.execPath: use the declared program 'node'`));
      return;
    }
    const name = n && (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) ? n.text : undefined;
    if (name === undefined) return;
    if (!declared.has(name)) out.push(undeclared(file, lineOf(n!), name, how));
  };
  const commandArray = (a: ts.ArrayLiteralExpression, how: string) => {
    const first = a.elements[0];
    programName(first, how);
    // sh -c 'script' / bash -c `script`: the script's commands are programs too
    const name = literalText(first);
    if ((name === 'sh' || name === 'bash') && literalText(a.elements[1]) === '-c') {
      const script = literalText(a.elements[2]);
      if (script !== undefined) {
        const base = lineOf(a.elements[2]);
        for (const f of scanShell(file, script, declared)) out.push({ ...f, line: base + f.line - 1 });
      }
    }
  };
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) childProcess(n.moduleSpecifier, n);
    else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference)) childProcess(n.moduleReference.expression, n);
    else if (ts.isCallExpression(n)) {
      if (n.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(n.expression) && n.expression.text === 'require'))
        childProcess(n.arguments[0], n);
      const name = calleeName(n.expression);
      if (name !== undefined) {
        if (PROGRAM_FIRST.has(name)) programName(n.arguments[0], `${name}() starts`);
        // exec('cmd line') is child_process's; exec(ns, [PROGRAM, …]) the lab's
        if (SHELL_LINE.has(name) && !n.arguments.some((a) => ts.isArrayLiteralExpression(a))) {
          const line = literalText(n.arguments[0]);
          if (line !== undefined) for (const f of scanShell(file, line, declared)) out.push({ ...f, line: lineOf(n) });
        }
        // spawn(PROGRAM, [args]) is child_process's; spawn(ns, [PROGRAM, …]) the lab's
        const namedFirst = literalText(n.arguments[0]) !== undefined || isExecPath(n.arguments[0]);
        if (COMMAND_ARRAY.test(name) && !ARGUMENT_ARRAY.has(name) && !(name === 'spawn' && namedFirst)) {
          for (const a of n.arguments) if (ts.isArrayLiteralExpression(a)) commandArray(a, `${name}() runs`);
        }
      }
    } else if (ts.isPropertyAssignment(n) && n.name.getText(sf) === 'cmd' && ts.isArrayLiteralExpression(n.initializer)) {
      commandArray(n.initializer, 'a cmd: runs');
    } else if (ts.isVariableDeclaration(n) && n.type && /\bCommand\b/.test(n.type.getText(sf)) && n.initializer && ts.isArrayLiteralExpression(n.initializer)) {
      commandArray(n.initializer, 'a Command runs');
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

// ───────────────────────────── the tree ─────────────────────────────

/** Every scanned file under the repository's SCANNED_DIRS, relative to root, sorted. */
export function sourceFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        if (!SKIPPED_DIRS.has(e.name)) walk(r);
      } else if (EXTENSIONS.some((x) => e.name.endsWith(x)) && !e.name.endsWith('.d.ts')) out.push(r);
    }
  };
  for (const d of SCANNED_DIRS) if (fs.existsSync(path.join(root, d))) walk(d);
  return out.sort();
}

export function scanFile(file: string, text: string, declared: ReadonlySet<string>): Finding[] {
  return file.endsWith('.sh') ? scanShell(file, text, declared) : scanSource(file, text, declared);
}

export function scanTree(root: string, declared: ReadonlySet<string>): Finding[] {
  return sourceFiles(root).flatMap((f) => scanFile(f, fs.readFileSync(path.join(root, f), 'utf8'), declared));
}

export const formatFinding = (f: Finding): string => `${f.file}:${f.line}: ${f.message}`;
