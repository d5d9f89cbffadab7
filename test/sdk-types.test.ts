// The SDK's published types compile in a strict TypeScript project that has
// neither @types/node nor msgpackr's types in view (a browser app): its
// .d.ts files reference only the SDK's own declarations and the DOM.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../native-io/package-root';

const ROOT = packageRoot();

test('dist/sdk/index.d.ts compiles with strict, "types": [] and lib es2022 + dom', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c10m-sdk-types-'));
  try {
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, types: [], lib: ['es2022', 'dom'], target: 'es2022', module: 'es2022', moduleResolution: 'bundler', skipLibCheck: false },
        files: ['app.ts'],
      }),
    );
    const sdk = path.join(ROOT, 'dist', 'sdk', 'index').replace(/\\/g, '/');
    fs.writeFileSync(
      path.join(dir, 'app.ts'),
      [
        `import { connect, C10mError, type Encoding, type Message, type PublishAck } from '${sdk}';`,
        `const encoding: Encoding = 'msgpack';`,
        `const client = connect('ws://localhost:8080', { encoding });`,
        `client.subscribe('/demo/chat', (m: Message<{ text: string }>) => console.log(m.seq, m.data.text));`,
        `client.on('gap', (g) => console.warn(g.topic, g.fromSeq, g.toSeq));`,
        `export async function send(): Promise<PublishAck | undefined> { try { return await client.publish('/demo/chat', { text: 'hi' }); } catch (e) { if (e instanceof C10mError) console.log(e.code); throw e; } }`,
      ].join('\n'),
    );
    const r = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc', { paths: [ROOT] }), '-p', dir], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
