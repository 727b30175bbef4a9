// Command socbox boots emulated ARM boards, logs in over SSH, installs
// containerd and runs scenario containers in the guest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `socbox — test ARM board images under QEMU: boot, SSH, containerd, containers.

Usage:
  socbox <command> [flags] [arguments]

Commands:
  boards          list the boards socbox emulates, and how faithfully
  image build     build (or find in the cache) the default Debian image for a board
  image ls        list cached images
  image rm        delete cached images (and the snapshots made from them)
  image prepare   make the bootable copy of your own board image (Raspberry Pi OS, BeagleBone Debian)
  image inspect   show the partitions, boot files, family, release and architecture of a board image
  boot            boot a board and keep it up; prints the ssh command; Ctrl-C cleans up
  ssh             log in to (or run a command on) a board that boot keeps up
  run             boot boards, run scenarios on them, write results.json, junit.xml, report.html;
                  --target ssh://USER@HOST runs them on a real board instead
  report          render junit.xml and report.html again from a results.json
  report merge    merge shards' results into one results.json, junit.xml and report.html; name what is missing
  cache           what socbox's cache holds, kind by kind: images, user images, packages, snapshots
  cache prune     remove what the cache has not used for a while (--older-than 14d, --max-size 20G)
  doctor          check that this host has what socbox needs, and say how to fix what is missing
  help            this text, or 'socbox help <command>' for a command's flags

Examples:
  socbox doctor
  socbox boards
  socbox image build --board raspi4b-fast --suite bookworm
  socbox boot --board raspi4b-fast
  socbox ssh -- uname -a                        # on the board boot keeps up
  socbox run                                    # raspi4b-fast, Debian trixie, the bundled scenarios
  socbox run --board all --out ./results        # every board, as many at once as the host allows
  socbox run --board raspi4b-fast,raspi3b my-checks.yaml more-checks/
  socbox run --target ssh://root@raspberrypi.local   # the same scenarios on the real, flashed board
  socbox image inspect ./2025-05-13-raspios-bookworm-arm64-lite.img.xz
  socbox run --board raspi3b --image ./2025-05-13-raspios-bookworm-arm64-lite.img.xz
  socbox run --run tag:network --skip bridge    # scenarios by name or tag, as go test -run and -skip
  socbox run --board all --shard 2/3 --out ./shard-2   # the second of three CI runners
  socbox report ./results/results.json
  socbox report merge -o ./merged ./shard-1 ./shard-2 ./shard-3
  socbox cache
  socbox cache prune --older-than 14d --max-size 20G

Run 'socbox <command> --help' for the flags and examples of a command.
Caches (images, packages, keys, snapshots) live in $SOCBOX_CACHE or ~/.cache/socbox; all of it can be deleted.
`

func main() {
	ctx, stop := onInterrupt(os.Stderr, os.Exit)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintln(os.Stderr, "socbox:", err)
		os.Exit(1)
	}
}

// exitCode is an error that carries the process's exit status; whatever
// there was to say has been printed already.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "help":
		if len(args) == 1 {
			fmt.Fprint(stdout, usage)
			return nil
		}
		// `socbox help image build` is `socbox image build --help`.
		return run(ctx, append(append([]string{}, args[1:]...), "--help"), stdout, stdout)
	case "boards":
		return cmdBoards(args[1:], stdout, stderr)
	case "image":
		return cmdImage(ctx, args[1:], stdout, stderr)
	case "boot":
		return cmdBoot(ctx, args[1:], stdout, stderr)
	case "ssh":
		return cmdSSH(ctx, args[1:], stdout, stderr)
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdout, stderr)
	case "doctor":
		return cmdDoctor(ctx, args[1:], stdout, stderr, doctorChecks())
	case "cache":
		return cmdCache(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return exitCode(2)
}

// command describes a command for its --help.
type command struct {
	name     string // "image build"
	args     string // what follows the flags: "[SCENARIOS...]"
	synopsis string
	examples string
}

// newFlags makes a flag set whose --help prints the synopsis, the flags
// and examples.
func newFlags(c command, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		line := "socbox " + c.name + " [flags]"
		if c.args != "" {
			line += " " + c.args
		}
		fmt.Fprintf(stderr, "Usage: %s\n\n%s\n", line, c.synopsis)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(stderr, "\nFlags:\n")
			fs.PrintDefaults()
		}
		if c.examples != "" {
			fmt.Fprintf(stderr, "\nExamples:\n%s", c.examples)
		}
	}
	return fs
}

// usageError prints what is wrong with the arguments and where help is,
// and ends with status 2.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) error {
	fmt.Fprintf(stderr, "socbox %s: %s\nRun 'socbox %s --help' for usage.\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return exitCode(2)
}

// parseFlags parses args, flags and arguments in any order
// (`socbox image prepare --board raspi3b IMAGE --sha256 HEX`); after "--"
// everything is an argument. A bad flag has been reported with the usage
// by the flag package, so it only sets the exit status.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return exitCode(2)
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
	// Leave fs.Args() holding the arguments alone.
	return fs.Parse(append([]string{"--"}, positional...))
}
