#!/usr/bin/env node
// A program with only the operator commands, for machines (and tests) that
// run them without the server: node dist/sysctl/main.js doctor --sessions N.
// `c10m` registers the same commands on its own program.

import { Command } from 'commander';
import { registerOpsCommands } from './cli';

const program = new Command('c10m').description('c10m operator commands: kernel profile and system check');
registerOpsCommands(program);
program.parse();
