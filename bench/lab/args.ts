// The command line of every lab script, read one way: `--name value` or
// `--name=value` for an option, `--name` alone for a flag. A lab script is
// an investigation, not a tool users run, so there is no --help: each
// script's header comment lists its options and their defaults.

/** The value of `--name value` or `--name=value`, else `fallback`. */
export function arg(name: string, fallback: string, argv: readonly string[] = process.argv): string {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
  const hit = argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}

/** `--name` given, alone. */
export function flag(name: string, argv: readonly string[] = process.argv): boolean {
  return argv.includes(`--${name}`);
}

/** Throws on an option that is not one of `known` (names without the dashes). */
export function refuseUnknown(known: readonly string[], argv: readonly string[] = process.argv.slice(2)): void {
  for (const a of argv) {
    if (!a.startsWith('--')) continue;
    const name = a.slice(2).split('=')[0];
    if (!known.includes(name)) throw new Error(`unknown option --${name} (known: ${known.map((k) => `--${k}`).join(', ')})`);
  }
}
