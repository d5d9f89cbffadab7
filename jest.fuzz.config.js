/** `npm run fuzz`: the long property runs and end-to-end publishes (test/fuzz/*.fuzz.ts), kept out of `npm test`. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.fuzz.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'test/tsconfig.json' }],
  },
  testTimeout: 1_800_000,
  maxWorkers: 1,
};
