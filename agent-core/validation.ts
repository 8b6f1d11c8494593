import type * as z from "zod/mini";
import en from "zod/v4/locales/en.js";

/**
 * zod/mini loads no locale: without one, every issue that has no message of our own reads
 * "Invalid input". Issues are worded by zod's English locale instead, as classic zod words them
 * ("Too small: expected string to have >=1 characters"), passed per parse rather than set
 * globally. The locale's tables are built on the first issue, so a valid input never pays for them.
 */
let english: z.core.$ZodErrorMap | undefined;
const englishMessage: z.core.$ZodErrorMap = (issue) => {
  english ??= en().localeError;
  return english(issue);
};

/**
 * `schema.safeParse(input)` with issues worded in English (see above). With `reportInput`, each
 * issue keeps the value it refused (`issue.input`), for messages that show it.
 *
 * @example
 * const result = validateInput(agentConfigSchema, input, { reportInput: true });
 * if (!result.success) throw new ConfigError(zodProblems(result.error));
 */
export function validateInput<T extends z.ZodMiniType>(
  schema: T,
  input: unknown,
  options: { reportInput?: boolean } = {},
): ReturnType<T["safeParse"]> {
  return schema.safeParse(input, { ...options, error: englishMessage }) as ReturnType<T["safeParse"]>;
}
