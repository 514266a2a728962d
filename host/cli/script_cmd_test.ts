import { assertEquals } from "../testing/assert.ts";
import { firstInvalidUtf8 } from "./script_cmd.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const utf8 = (s: string) => new TextEncoder().encode(s);

Deno.test("firstInvalidUtf8 accepts UTF-8 of every length", () => {
  const text = utf8("a é € 𝄞 \u{10ffff}");
  assertEquals(firstInvalidUtf8(text), text.length);
  assertEquals(firstInvalidUtf8(bytes()), 0);
});

Deno.test("firstInvalidUtf8 finds the first byte that is not UTF-8", () => {
  // Latin-1 "café": 0xe9 starts a 3-byte sequence that does not go on.
  assertEquals(firstInvalidUtf8(bytes(0x63, 0x61, 0x66, 0xe9, 0x0a)), 3);
  // A lone continuation byte, an overlong "/", a surrogate, beyond U+10FFFF.
  assertEquals(firstInvalidUtf8(bytes(0x61, 0x80)), 1);
  assertEquals(firstInvalidUtf8(bytes(0xc0, 0xaf)), 0);
  assertEquals(firstInvalidUtf8(bytes(0x61, 0xed, 0xa0, 0x80)), 1);
  assertEquals(firstInvalidUtf8(bytes(0xf4, 0x90, 0x80, 0x80)), 0);
  // Cut off at the end.
  assertEquals(firstInvalidUtf8(bytes(0x61, 0xe2, 0x82)), 1);
  // The same verdict as a strict decoder, over every two-byte input.
  const strict = new TextDecoder("utf-8", { fatal: true });
  for (let a = 0; a < 256; a++) {
    for (let b = 0; b < 256; b++) {
      const input = bytes(a, b);
      let valid = true;
      try {
        strict.decode(input);
      } catch {
        valid = false;
      }
      assertEquals(firstInvalidUtf8(input) === 2, valid, `${a.toString(16)} ${b.toString(16)}`);
    }
  }
});
