package bench

import (
	"strings"
	"testing"
)

func TestParseConntrackDrops(t *testing.T) {
	const stat = `entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000221  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000044b 00000000 00000000  00000000 00000000 00000000 00000000
00000221  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 000003f7 00000000 00000000  00000000 00000000 00000000 00000000
`
	if n, ok := parseConntrackDrops(strings.NewReader(stat)); !ok || n != 0x44b+0x3f7 {
		t.Fatalf("drops = %d, %v; want %d", n, ok, 0x44b+0x3f7)
	}
	for _, bad := range []string{"", "entries found\n1 2\n", "entries drop\n00 zz\n", "entries x drop\n01\n"} {
		if n, ok := parseConntrackDrops(strings.NewReader(bad)); ok {
			t.Errorf("%q: parsed %d, want not ok", bad, n)
		}
	}
}
