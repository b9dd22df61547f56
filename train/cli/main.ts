// `mmpareto` — train, evaluate and compare multimodal runs. See `mmpareto --help`.
// Exit codes: 0 success, 1 the work failed (data, checkpoint, I/O, a non-finite loss, a lost
// GPU), 2 bad usage, 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM after the step in
// progress (resumable from the last epoch's checkpoint).
import '../node.ts'; // Dawn as the default GPU
import { parseArgs } from 'node:util';
import { init, type Device } from '../../engine/index.ts';
import { VERSION } from '../run/config.ts';
import { OPTIONS, UsageError } from './args.ts';
import { cmdAnalyze, cmdEval, cmdReport, cmdTrain, type Io } from './commands.ts';
import { HELP } from './help.ts';
import { cmdPrepare } from './prepare.ts';

export { parseTrainArgs, UsageError } from './args.ts';

/** Runs the CLI; returns the exit code (never calls process.exit). */
export async function main(
  argv: string[],
  io: Io = { out: (s) => console.log(s), err: (s) => console.error(s) },
  given?: Device,
): Promise<number> {
  let device: Device | null = null; // created here on first need (usage errors create none), destroyed at the end
  const getDevice = async () => given ?? (device ??= await init());
  try {
    const parsed = (() => {
      try {
        return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    })();
    const { values: v, positionals } = parsed;
    if (v.version) {
      io.out(VERSION);
      return 0;
    }
    const [cmd, ...rest] = positionals;
    if (v.help || !cmd) {
      io.out(HELP);
      return v.help ? 0 : 2;
    }
    if (cmd === 'train') {
      if (rest.length) throw new UsageError(`train takes no positional arguments, got ${rest.join(' ')}`);
      return await cmdTrain(v, argv, io, getDevice);
    } else if (cmd === 'eval') await cmdEval(v, rest, io, getDevice);
    else if (cmd === 'report') cmdReport(v, rest, io);
    else if (cmd === 'prepare') return await cmdPrepare(v, rest, io, (m) => new UsageError(m));
    else if (cmd === 'analyze') await cmdAnalyze(v, rest, io, getDevice);
    else throw new UsageError(`unknown command '${cmd}' (valid: train, eval, report, prepare, analyze)`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`mmpareto: ${e.message}\nRun 'mmpareto --help' for the options.`);
      return 2;
    }
    io.err(`mmpareto: ${(e as Error).message}`);
    if (process.env.MMPARETO_DEBUG) io.err((e as Error).stack ?? '');
    return 1;
  } finally {
    (device as Device | null)?.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/train/cli/main.ts')) {
  process.exitCode = await main(process.argv.slice(2));
}
