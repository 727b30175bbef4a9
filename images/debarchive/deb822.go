package debarchive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// stanza is one paragraph of a deb822 file (Packages, Release): field names
// are stored lower-cased because deb822 field names are case-insensitive.
type stanza map[string]string

// get returns the value of a field, whatever the case of name.
func (s stanza) get(name string) string { return s[strings.ToLower(name)] }

// parseStanzas reads RFC 822-style paragraphs separated by blank lines and
// calls fn for each one. Continuation lines (starting with a space or tab)
// are appended to the previous field, joined with "\n" and without their
// leading blanks; a field whose first line is empty (Release's "SHA256:")
// therefore starts with "\n". Lines starting with '#' are comments.
//
// If only is not empty, other fields are skipped without being stored:
// Packages files are large and most of their text is descriptions.
func parseStanzas(r io.Reader, only []string, fn func(stanza) error) error {
	p := stanzaParser{br: bufio.NewReaderSize(r, 256<<10), cur: stanza{}}
	for _, name := range only {
		p.only = append(p.only, strings.ToLower(name))
	}
	return p.run(fn)
}

type stanzaParser struct {
	br      *bufio.Reader
	only    []string
	cur     stanza
	last    string // lower-cased name of the field being continued, "" if skipped
	inField bool   // a field (stored or skipped) is open for continuation
	lineNo  int
	long    []byte
}

func (p *stanzaParser) run(fn func(stanza) error) error {
	flush := func() error {
		p.last, p.inField = "", false
		if len(p.cur) == 0 {
			return nil
		}
		err := fn(p.cur)
		p.cur = stanza{}
		return err
	}
	for {
		line, err := p.readLine()
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return err
		}
		p.lineNo++
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			if err := flush(); err != nil {
				return err
			}
		case line[0] == '#':
			// comment
		case line[0] == ' ' || line[0] == '\t':
			if !p.inField {
				return fmt.Errorf("line %d: continuation line without a field", p.lineNo)
			}
			if p.last != "" {
				p.cur[p.last] += "\n" + string(bytes.TrimSpace(line))
			}
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return fmt.Errorf("line %d: %q is neither a field nor a continuation", p.lineNo, truncate(string(line), 60))
			}
			p.inField = true
			p.last = p.fieldName(line[:colon])
			if p.last != "" {
				p.cur[p.last] = string(bytes.TrimSpace(line[colon+1:]))
			}
		}
	}
}

// fieldName returns the lower-cased name under which to store a field, or
// "" to skip it.
func (p *stanzaParser) fieldName(name []byte) string {
	if len(p.only) == 0 {
		return strings.ToLower(string(name))
	}
	for _, want := range p.only {
		if len(want) == len(name) && bytes.EqualFold(name, []byte(want)) {
			return want
		}
	}
	return ""
}

// readLine returns the next line without its line ending; the slice is only
// valid until the next call. io.EOF comes after the last line.
func (p *stanzaParser) readLine() ([]byte, error) {
	line, err := p.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		p.long = append(p.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = p.br.ReadSlice('\n')
			p.long = append(p.long, line...)
		}
		line = p.long
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(line) == 0 && err == io.EOF {
		return nil, io.EOF
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
