// Argument checks shared by the wrapper and the JS fallbacks. They throw the
// same errors (class, code and message) as the addon's checks in
// src/errors.h, so a caller sees one behaviour whichever path runs.

export function argTypeError(name: string, type: string): TypeError {
  const err = new TypeError(`The "${name}" argument must be of type ${type}.`);
  (err as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

/** An integer in [min, max]; `maxNote` says where the maximum comes from. */
export function integerArg(value: unknown, name: string, min: number, max: number, maxNote?: string): number {
  if (typeof value !== 'number') throw argTypeError(name, 'number');
  if (!Number.isInteger(value) || value < min || value > max) {
    const note = maxNote ? ` (${maxNote})` : '';
    const err = new RangeError(`The value of "${name}" is out of range. It must be an integer >= ${min} and <= ${max}${note}. Received ${String(value)}.`);
    (err as NodeJS.ErrnoException).code = 'ERR_OUT_OF_RANGE';
    throw err;
  }
  return value;
}
