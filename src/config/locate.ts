/**
 * Where the config comes from: --config FILE, else $PITIFULNAT_CONFIG, else
 * the default path.
 * @module
 */

/** The default config path, tried when neither flag nor variable is given. */
export const DEFAULT_CONFIG_PATH = "/etc/pitifulnat/config.yaml";
/** The environment variable naming the config file. */
export const CONFIG_ENV = "PITIFULNAT_CONFIG";

/** Result of the lookup: the file to read, or null with what was tried. */
export interface Located {
  path: string | null;
  /** True when the user named a file (flag or variable): it must exist. */
  explicit: boolean;
  tried: string[];
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Finds the config file. */
export function locateConfig(flag: string | undefined): Located {
  if (flag !== undefined) {
    return { path: exists(flag) ? flag : null, explicit: true, tried: [`--config ${flag}`] };
  }
  let env: string | undefined;
  try {
    env = Deno.env.get(CONFIG_ENV);
  } catch {
    env = undefined; // no --allow-env: behave as if unset
  }
  if (env) {
    return { path: exists(env) ? env : null, explicit: true, tried: [`$${CONFIG_ENV}=${env}`] };
  }
  return {
    path: exists(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : null,
    explicit: false,
    tried: [`--config (not given)`, `$${CONFIG_ENV} (not set)`, DEFAULT_CONFIG_PATH],
  };
}

/** The message for a config that was asked for but is not there. */
export function missingMessage(located: Located): string {
  return `pitifulnat: no config file found; tried: ${located.tried.join(", ")}`;
}
