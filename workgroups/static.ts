// Static routes of the public port: the demo page at / and the browser SDK
// at /sdk/c10m.js. (Filled in by the SDK work; registers nothing yet.)
import type { TemplatedApp } from '../native-io/uws';

export function registerStaticRoutes(_app: TemplatedApp): void {}
