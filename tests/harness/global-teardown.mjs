export default async function globalTeardown() {
  await globalThis.__SIGIL_TEST_SERVICES__?.stop();
}
