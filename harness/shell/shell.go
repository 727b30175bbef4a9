// Package shell is socbox's one shell quoter: argv in, text a POSIX shell
// reads back as that argv out. Every command socbox sends to a guest, and
// every command line it prints for a person to paste, goes through it.
package shell

import "strings"

// plain are the characters no POSIX shell treats specially in an argument.
// '=' is among them only outside the command word: see Join.
const plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@%+,="

// Quote returns s as one shell word in an argument position, so that it
// reaches the command as one argument whatever it holds. A string made
// only of plain characters is returned unchanged, which keeps logged
// command lines readable.
func Quote(s string) string {
	if s != "" && strings.Trim(s, plain) == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join renders argv as one command line. The command word is quoted
// whenever it holds a '=', which a shell would otherwise read as a
// variable assignment.
func Join(argv ...string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if i == 0 && strings.Contains(a, "=") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
			continue
		}
		out[i] = Quote(a)
	}
	return strings.Join(out, " ")
}

// Script renders a fixed POSIX sh script run with args as its positional
// parameters ($1, $2, … and "$@"): values never become part of the
// script's text, so the script can be read, and checked, as written.
func Script(script string, args ...string) string {
	return Join(append([]string{"sh", "-c", script, "sh"}, args...)...)
}
