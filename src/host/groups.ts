/**
 * Unix groups by name and by gid, read from /etc/group (no NSS: a group only LDAP or sssd knows
 * is given by its numeric gid). The admin socket's group (admin.group) is resolved here, and the
 * CLI names the socket's group when it is refused. Loads nothing of the daemon.
 */
import * as fs from 'node:fs';
import { GID_MAX } from '../config/values';

export const GROUP_FILE = '/etc/group';

export interface GroupEntry {
  name: string;
  gid: number;
  /** The user names listed as members (not the users whose primary group it is). */
  members: string[];
}

/** The entries of a group(5) file's text: `name:password:gid:member,member`; malformed lines are skipped. */
export function parseGroupFile(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4 || !f[0] || !/^\d+$/.test(f[2])) continue;
    const gid = Number(f[2]);
    if (gid > GID_MAX) continue;
    out.push({
      name: f[0],
      gid,
      members: f[3]
        .split(',')
        .filter((m) => m.trim() !== '')
        .map((m) => m.trim()),
    });
  }
  return out;
}

/** The groups of /etc/group (or `file`); none when it cannot be read. */
export function readGroups(file = GROUP_FILE): GroupEntry[] {
  try {
    return parseGroupFile(fs.readFileSync(file, 'utf8'));
  } catch {
    return [];
  }
}

/** A numeric gid written as a group: digits only, at most GID_MAX. */
export function numericGid(group: string | number): number | undefined {
  const text = String(group);
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n <= GID_MAX ? n : undefined;
}

/**
 * The gid of `group`: a number (or digits) is used as it is, a name is looked up in `groups`
 * (the first entry of that name, as getgrnam does); undefined for a name no entry has.
 */
export function resolveGroup(group: string | number, groups: readonly GroupEntry[] = readGroups()): number | undefined {
  const n = numericGid(group);
  if (n !== undefined) return n;
  return groups.find((g) => g.name === group)?.gid;
}

/** The name of `gid` (the first entry with it), or undefined. */
export function groupName(gid: number, groups: readonly GroupEntry[] = readGroups()): string | undefined {
  return groups.find((g) => g.gid === gid)?.name;
}
