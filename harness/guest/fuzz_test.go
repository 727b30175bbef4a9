package guest

import (
	"strings"
	"testing"
)

// FuzzParseFacts feeds what a board answers to the facts script: a real
// board is anyone's, so its answer may be anything. It must not panic, and
// what it accepts has a machine name and a uid.
func FuzzParseFacts(f *testing.F) {
	f.Add("kernel=6.12.25+rpt-rpi-v8\nmachine=aarch64\nhostname=raspberrypi\nuid=0\nos=Debian GNU/Linux 12 (bookworm)\nsuite=bookworm\narch=arm64\nmodel=Raspberry Pi 4 Model B Rev 1.4\n")
	f.Add("machine=armv7l\nuid=1000\n")
	f.Add("uid=x\nmachine=\n")
	f.Add("sh: 1: uname: not found\n")
	f.Add("machine=a=b\nuid=-1\nmodel=\x00\n")
	f.Fuzz(func(t *testing.T, out string) {
		facts, err := ParseFacts(out)
		if err != nil {
			return
		}
		if facts.Machine == "" || !strings.Contains(out, "uid=") {
			t.Fatalf("accepted %q as %+v", out, facts)
		}
		_ = facts.DebianArch()
	})
}

// FuzzParseOS feeds what a guest answers to the OS script.
func FuzzParseOS(f *testing.F) {
	f.Add("trixie\narm64\nii  dpkg\nrc  old\nii  libc6:arm64\n")
	f.Add("\n\n")
	f.Add("bookworm\n")
	f.Add("bookworm\narmhf\nii\nii a b c\n")
	f.Fuzz(func(t *testing.T, out string) {
		g, err := parseOS(out)
		if err != nil {
			return
		}
		if g.Suite == "" || g.Installed == nil {
			t.Fatalf("accepted %q as %+v", out, g)
		}
	})
}
