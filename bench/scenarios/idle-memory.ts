import type { Progress, RunOptions } from '../harness';
import type { ScenarioResult } from '../report';
import type { Target } from '../targets';

export async function idleMemory(_t: Target, _o: RunOptions, _p: Progress): Promise<Omit<ScenarioResult, 'env' | 'scenario'>> {
  throw new Error('not yet');
}
