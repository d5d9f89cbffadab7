// Lint for the server, the SDK, the tools and the tests: the recommended
// rules of ESLint and typescript-eslint, with the few exceptions this code
// base needs, each with its reason. Formatting is Prettier's (.prettierrc).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'dist-lab/**', 'node_modules/**', '**/build/**', 'bench/results/**', 'test-artifacts/**', 'sdk/demo/**', 'server/dashboard/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: {
        process: 'readonly',
        Buffer: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        __dirname: 'readonly',
        require: 'readonly',
        module: 'writable',
        URL: 'readonly',
        TextDecoder: 'readonly',
        TextEncoder: 'readonly',
        fetch: 'readonly',
        AbortSignal: 'readonly',
        performance: 'readonly',
        SharedArrayBuffer: 'readonly',
        Atomics: 'readonly',
        WebSocket: 'readonly',
        queueMicrotask: 'readonly',
      },
    },
    rules: {
      // Parameters named with a leading underscore are the ones an interface requires and an implementation does not use.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // The native addon and node-gyp scripts are loaded with require() on purpose (they may be absent).
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // Plain Node scripts (CommonJS): build helpers, the CLI entry, configs.
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
  },
);
