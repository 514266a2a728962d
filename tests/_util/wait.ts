/**
 * Bounded waiting for tests: every wait has a deadline and fails loudly,
 * naming what it waited for. The helpers live in host/testing/wait.ts, so
 * that the contract suites under host/ need nothing from tests/.
 *
 * @module
 */

export * from "../../host/testing/wait.ts";
