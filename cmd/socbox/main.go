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
	"os/signal"
	"syscall"
)

const usage = `socbox — test ARM board images under QEMU: boot, SSH, containerd, containers.

Usage:
  socbox <command> [flags]

Commands:
  boards          list the boards socbox emulates, and how faithfully
  image build     build (or find in the cache) the default Debian image for a board
  image ls        list cached images
  boot            boot a board and keep it up; prints the ssh command; Ctrl-C cleans up
  run             boot a board, run the bundled scenarios, print and save the results

Examples:
  socbox boards
  socbox image build --board raspi4b --suite bookworm
  socbox boot --board raspi4b
  socbox run                      # raspi4b, Debian trixie, bundled scenarios
  socbox run --board raspi4b --containerd apt --out ./results

Run 'socbox <command> --help' for the flags of a command.
Caches (images, packages, keys) live in $SOCBOX_CACHE or ~/.cache/socbox; all of it can be deleted.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "socbox:", err)
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		os.Exit(1)
	}
}

// exitCode is an error that carries the process's exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "boards":
		return cmdBoards(args[1:], stdout, stderr)
	case "image":
		return cmdImage(ctx, args[1:], stdout, stderr)
	case "boot":
		return cmdBoot(ctx, args[1:], stdout, stderr)
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return exitCode(2)
}

// newFlags makes a flag set whose --help prints a description and examples.
func newFlags(name, synopsis, examples string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: socbox %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
		if examples != "" {
			fmt.Fprintf(stderr, "\nExamples:\n%s", examples)
		}
	}
	return fs
}
