package debarchive

import "strings"

// InstalledQuery is the command to run in a guest (over SSH) whose output
// ParseInstalled reads: one "<status> <package>" line per package dpkg knows.
const InstalledQuery = `dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n'`

// ParseInstalled reads the output of InstalledQuery into the installed set
// that Resolve and FetchDebs take. Packages dpkg knows but has not installed
// (removed with their configuration kept, half-installed) are left out.
// Lines holding just a package name (`dpkg-query -W -f '${Package}\n'`)
// count as installed too.
func ParseInstalled(out string) map[string]bool {
	set := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		var name string
		switch len(f) {
		case 1:
			name = f[0]
		case 2:
			if len(f[0]) < 2 || f[0][1] != 'i' {
				continue
			}
			name = f[1]
		default:
			continue
		}
		name, _, _ = strings.Cut(name, ":") // libc6:arm64 → libc6
		set[name] = true
	}
	return set
}
