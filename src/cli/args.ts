/**
 * Reads the command line: a known command, only its options, each with a
 * value when it takes one; every mistake is a {@linkcode UsageError} that
 * names it and says what was probably meant.
 * @module
 */
import { parseArgs } from "node:util";
import { normalizeAddress } from "../nat/announce.ts";
import { closest } from "../text/closest.ts";
import { HELP, USAGE } from "./help.ts";

/** An option's name, as parseArgs reports it. */
type OptionName =
  | "config"
  | "client"
  | "url"
  | "json"
  | "cost"
  | "home"
  | "permissions"
  | "reload"
  | "help"
  | "version";

/** Every option of every command, for parseArgs. */
const OPTIONS: Record<OptionName, { type: "string" | "boolean"; short?: string }> = {
  config: { type: "string", short: "c" },
  client: { type: "string" },
  url: { type: "string" },
  json: { type: "boolean" },
  cost: { type: "string" },
  home: { type: "string" },
  permissions: { type: "string" },
  reload: { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
};

/** A subcommand: the options it takes (of its command's) and its operand, if it takes one. */
interface Subcommand {
  options: OptionName[];
  operand?: string;
}

/** The commands that take a subcommand as their second word, and their subcommands. */
const SUBCOMMANDS: Record<string, Record<string, Subcommand>> = {
  user: {
    add: { options: ["config", "home", "permissions", "reload"], operand: "NAME" },
    passwd: { options: ["config", "reload"], operand: "NAME" },
    del: { options: ["config", "reload"], operand: "NAME" },
    list: { options: ["config"] },
  },
};

/** The commands and the options each takes besides {@linkcode COMMON_OPTIONS}. */
const COMMAND_OPTIONS: Record<string, OptionName[]> = {
  serve: ["config"],
  proxy: ["config"],
  check: ["config", "client"],
  status: ["config", "url", "json"],
  "hash-password": ["cost"],
  user: [...new Set(Object.values(SUBCOMMANDS.user).flatMap((sub) => sub.options))],
  help: [],
};

/** The options every command takes. */
const COMMON_OPTIONS: OptionName[] = ["help", "version"];

/** The option values of a well-formed command line. */
export interface Values {
  config?: string;
  client?: string;
  url?: string;
  json?: boolean;
  cost?: string;
  home?: string;
  permissions?: string;
  reload?: string;
  help?: boolean;
  version?: boolean;
}

/**
 * A well-formed command line: the command (none: just options), `help`'s
 * topic, the subcommand and its operand (`user add NAME`), the options.
 */
export interface CommandLine {
  command?: string;
  topic?: string;
  subcommand?: string;
  operand?: string;
  values: Values;
}

/** An option as parseArgs's tokens report it. */
interface OptionToken {
  name: string;
  rawName: string;
  value?: string;
  inlineValue?: boolean;
}

/** A bad command line: what is wrong, and the help text to show after it. */
export class UsageError extends Error {
  /** `help`: the text printed after the message (a command's help or the general usage). */
  constructor(message: string, readonly help: string) {
    super(message);
  }
}

/**
 * Parses and checks the command line: a known command (and subcommand,
 * for `user`), only its options, each with a value when it takes one, no
 * stray arguments, and option values of the right form.
 *
 * @throws {UsageError} naming the first thing wrong.
 */
export function parseCommandLine(args: string[]): CommandLine {
  const { positionals, tokens } = parseArgs({
    args,
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const [command, ...rest] = positionals;
  const known = command === undefined || Object.hasOwn(COMMAND_OPTIONS, command);
  // In command-line order, so that the first mistake is the one reported
  // (the first positional is the command).
  const values: Record<string, string | boolean> = {};
  for (const token of tokens) {
    if (token.kind === "positional" && !known) throw unknownCommand("pitifulnat", command);
    if (token.kind === "option") {
      values[token.name] = optionValue(token, known ? command : undefined);
    }
  }
  const line: CommandLine = { command, values };
  if (command === "help" && rest.length > 0) {
    if (!Object.hasOwn(HELP, rest[0])) throw unknownCommand("pitifulnat help", rest[0]);
    line.topic = rest.shift();
  }
  if (command !== undefined && Object.hasOwn(SUBCOMMANDS, command)) {
    // `user add --help` is the help of user: its words need no checking.
    if (line.values.help) rest.length = 0;
    else takeSubcommand(line, command, rest);
  }
  const where = [command, line.subcommand].filter((w) => w !== undefined).join(" ");
  if (command !== undefined && rest.length > 0) {
    throw new UsageError(`pitifulnat ${where}: unexpected argument ${rest[0]}`, HELP[command]);
  }
  if (command !== undefined) checkValues(command, where, line.values);
  return line;
}

/**
 * Moves the subcommand and its operand from `rest` into `line`, and checks
 * that the options given are the subcommand's.
 *
 * @throws {UsageError} for a missing or unknown subcommand, a missing
 * operand, or an option of another subcommand.
 */
function takeSubcommand(line: CommandLine, command: string, rest: string[]): void {
  const subcommands = SUBCOMMANDS[command];
  const names = Object.keys(subcommands);
  const fail = (message: string): never => {
    throw new UsageError(`pitifulnat ${command}${message}`, HELP[command]);
  };
  const name = rest.shift() ?? fail(`: missing subcommand (${names.join(", ")})`);
  if (!Object.hasOwn(subcommands, name)) {
    fail(`: unknown subcommand ${name}${didYouMean(closest(name, names))}`);
  }
  const sub = subcommands[name];
  line.subcommand = name;
  if (sub.operand !== undefined) {
    line.operand = rest.shift();
    if (line.operand === undefined) fail(` ${name}: missing ${sub.operand}`);
  }
  for (const option of Object.keys(line.values) as OptionName[]) {
    if (COMMON_OPTIONS.includes(option) || sub.options.includes(option)) continue;
    const owners = names.filter((n) => subcommands[n].options.includes(option));
    fail(
      ` ${name}: --${option} is not an option of ${command} ${name} (only of ${owners.join(", ")})`,
    );
  }
  if (name === "add" && line.values.home === undefined) fail(` add: missing --home DIR`);
}

/**
 * The value of one option on `command`'s line (true for a flag).
 *
 * @throws {UsageError} for an unknown option, one of another command, a
 * missing value or a value given to a flag.
 */
function optionValue(token: OptionToken, command: string | undefined): string | boolean {
  const where = command === undefined ? "pitifulnat" : `pitifulnat ${command}`;
  const help = command === undefined ? USAGE : HELP[command];
  if (!Object.hasOwn(OPTIONS, token.name)) {
    const hint = didYouMean(optionSuggestions(token.rawName, command));
    throw new UsageError(`${where}: unknown option ${token.rawName}${hint}`, help);
  }
  const name = token.name as OptionName;
  if (command !== undefined && !takesOption(command, name)) {
    const owners = Object.keys(COMMAND_OPTIONS).filter((c) => takesOption(c, name));
    throw new UsageError(
      `${where}: ${token.rawName} is not an option of ${command} (only of ${owners.join(", ")})`,
      help,
    );
  }
  if (OPTIONS[name].type === "boolean") {
    if (token.value === undefined) return true;
    throw new UsageError(`${where}: option ${token.rawName} takes no value`, help);
  }
  // A separate value that looks like an option is most likely the next option, not a value.
  if (!token.value || (!token.inlineValue && token.value.startsWith("-"))) {
    const hint = token.value ? ` (for one starting with "-", write --${name}=VALUE)` : "";
    throw new UsageError(`${where}: option ${token.rawName} needs a value${hint}`, help);
  }
  return token.value;
}

/** Whether `command` takes the option `name`. */
function takesOption(command: string, name: OptionName): boolean {
  return COMMON_OPTIONS.includes(name) || COMMAND_OPTIONS[command].includes(name);
}

/**
 * The options of `command` (any command's when undefined) that the unknown
 * `rawName` was probably meant to be: for a long option the closest names,
 * for a short one the letter in the other case (-v for -V).
 */
function optionSuggestions(rawName: string, command: string | undefined): string[] {
  const names = (Object.keys(OPTIONS) as OptionName[]).filter((n) =>
    command === undefined || takesOption(command, n)
  );
  if (rawName.startsWith("--")) return closest(rawName.slice(2), names).map((n) => `--${n}`);
  const letter = rawName.slice(1).toLowerCase();
  return names.flatMap((n) => OPTIONS[n].short ?? [])
    .filter((s) => s.toLowerCase() === letter)
    .map((s) => `-${s}`);
}

/** A usage error for an unknown command, suggesting the closest one. */
function unknownCommand(where: string, name: string): UsageError {
  const hint = didYouMean(closest(name, Object.keys(COMMAND_OPTIONS)));
  return new UsageError(`${where}: unknown command ${name}${hint}`, USAGE);
}

/**
 * Checks the values whose form main.ts can judge before the command runs
 * (`where`: the command and subcommand, for messages):
 * --client an IP address, --url an http(s) URL, --reload a process id
 * (--cost: hash-password; --permissions: the config schema).
 *
 * @throws {UsageError} naming the option and the value.
 */
function checkValues(command: string, where: string, values: Values): void {
  const fail = (message: string) => {
    throw new UsageError(`pitifulnat ${where}: ${message}`, HELP[command]);
  };
  if (values.client !== undefined && !isIpAddress(values.client)) {
    fail(`--client ${values.client} is not an IPv4 or IPv6 address`);
  }
  if (values.url !== undefined && !/^https?:$/.test(URL.parse(values.url)?.protocol ?? "")) {
    fail(`--url ${values.url} is not an http:// or https:// URL`);
  }
  if (values.reload !== undefined && !/^[1-9]\d{0,9}$/.test(values.reload)) {
    fail(`--reload ${values.reload} is not a process id`);
  }
}

/**
 * Whether `text` is an IPv4 or IPv6 address (IPv4-mapped and bracketed
 * forms included), read as check reads a client's address.
 */
function isIpAddress(text: string): boolean {
  try {
    normalizeAddress(text);
    return true;
  } catch {
    return false;
  }
}

/** " (did you mean X?)" for the suggestions (joined with "or"), "" for none. */
function didYouMean(suggestions: string[]): string {
  return suggestions.length ? ` (did you mean ${suggestions.join(" or ")}?)` : "";
}
