/**
 * pitifulnat: an FTP server and FTP NAT fixer. The single entry point:
 * parses the command line and dispatches to a command.
 * @module
 */
import { runCheck } from "./src/cli/check.ts";
import { type CommandLine, parseCommandLine, UsageError } from "./src/cli/args.ts";
import { HELP, USAGE, VERSION } from "./src/cli/help.ts";
import { runHashPassword } from "./src/cli/hash_password.ts";
import { runProxy } from "./src/cli/proxy.ts";
import { runServe } from "./src/cli/serve.ts";
import { runStatus } from "./src/cli/status.ts";
import { runUser } from "./src/cli/user.ts";

export { VERSION };

/** Runs the command line; returns the exit code (2 for a bad command line). */
export async function main(args: string[]): Promise<number> {
  let line: CommandLine;
  try {
    line = parseCommandLine(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${e.message}\n\n${e.help}`);
    return 2;
  }
  return await dispatch(line);
}

/** Runs a well-formed command line; returns the exit code. */
async function dispatch(line: CommandLine): Promise<number> {
  const { command, topic, values } = line;
  if (values.version) {
    console.log(`pitifulnat ${VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`);
    return 0;
  }
  if (command === undefined) {
    (values.help ? console.log : console.error)(USAGE);
    return values.help ? 0 : 2;
  }
  if (values.help) {
    console.log(HELP[command]);
    return 0;
  }
  switch (command) {
    case "help":
      console.log(topic === undefined ? USAGE : HELP[topic]);
      return 0;
    case "serve":
      return await runServe({ config: values.config });
    case "proxy":
      return await runProxy({ config: values.config });
    case "check":
      return await runCheck({ config: values.config, client: values.client });
    case "status":
      return await runStatus({ config: values.config, url: values.url, json: values.json });
    case "user":
      return await runUser({
        subcommand: line.subcommand,
        name: line.operand,
        config: values.config,
        home: values.home,
        permissions: values.permissions,
        reload: values.reload,
      });
    default:
      return await runHashPassword({ cost: values.cost });
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
