// SPDX-License-Identifier: LGPL-2.1-or-later

//go:build ignore

// Generates tests/unit/gojson-vectors.h: what Go itself answers for json.Marshal(string),
// strconv.Quote, strconv.Unquote and Time.Format(time.RFC3339Nano) (after restic's FixTime) over
// a wide set of inputs, so test-gojson can hold src/base/gojson.c to Go's exact bytes without
// needing Go at build time. Run it with the Go that built the restic we match (Go 1.19 for
// restic 0.14; Debian bookworm's golang-go) from the top of the tree:
//
//	go run scripts/gen-gojson-vectors.go > tests/unit/gojson-vectors.h
//
// The random inputs come from a fixed seed, so rerunning with the same Go gives the same file.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

var w = bufio.NewWriter(os.Stdout)

// cstr renders arbitrary bytes as a C string literal: printable ASCII as is, everything else as
// three-digit octal (which, unlike \x, cannot swallow a following digit), split into pieces that
// the compiler concatenates so no line runs past 100 columns.
func cstr(s string, indent int) string {
	var pieces []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		var e string
		switch {
		case c == '"' || c == '\\':
			e = `\` + string(c)
		case c == '?':
			e = `\?` // no trigraphs, whatever the compiler flags
		case c >= 0x20 && c < 0x7f:
			e = string(c)
		default:
			e = fmt.Sprintf(`\%03o`, c)
		}
		if cur.Len()+len(e) > 100-indent-14 { // room for the quotes and ", 1234 },"
			pieces = append(pieces, cur.String())
			cur.Reset()
		}
		cur.WriteString(e)
	}
	pieces = append(pieces, cur.String())
	for i := range pieces {
		pieces[i] = `"` + pieces[i] + `"`
	}
	return strings.Join(pieces, "\n"+strings.Repeat(" ", indent))
}

// fixTime is restic's FixTime (internal/restic/node.go): years outside 0..9999 are moved into
// range with AddDate, everything else unchanged.
func fixTime(t time.Time) time.Time {
	switch {
	case t.Year() < 0:
		return t.AddDate(-t.Year(), 0, 0)
	case t.Year() > 9999:
		return t.AddDate(-(t.Year() - 9999), 0, 0)
	default:
		return t
	}
}

func encodeRunes(rs ...rune) string {
	var b []byte
	for _, r := range rs {
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}

func stringInputs() []string {
	var in []string
	for b := 0; b < 256; b++ {
		in = append(in, string([]byte{byte(b)}))
	}
	in = append(in,
		"",
		"a<b>&.txt", "q\"uo\\te.txt", "inv\xfe.txt", "a\x01b", "nbsp\u00a0x", "\U000e0001",
		"\b\f\v\a\t\n\r\x00\x1f\x7f", "tab\there", "line\nbreak", "cr\rlf\n", "back\\slash",
		"\u00a0", "\u00ad", "\u200b", "\u200d", "\u2028", "\u2029", "\u2028x\u2029",
		"\ufffd", "\ufeff", "\uffff", "\ufffe", "\U0010ffff", "\U0001f600", "\u0085", "\u3000",
		"\u202e", "\u061c", "\u1680", "\U000e007f", "\U000f0000", "\U00100000",
		"日本語.txt", "naïve café", "e\u0301", "Ω≈ç√∫", "<script>", "&amp;", "a>b",
		// overlong forms, UTF-8-encoded surrogates, beyond U+10FFFF, truncated sequences
		"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xf0\x80\x80\x80",
		"\xf0\x8f\xbf\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xed\xa0\x80\xed\xb0\x80",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe\xff",
		"\xe2\x82", "\xf0\x9f\x98", "\xe2\x82x", "\xf0\x9f\x98\x80\xf0\x9f", "\x80\x80\x80",
		"\xc2", "\xc2\xa0\xc2", "ok\xe2\x80\xa8ok", "\xef\xbf\xbd\xff",
		"mixed \x00 \u00e9 \xff \u2028 <&> \"\\\" \U0001f600 \u200b end",
	)
	// Every 8th boundary of Go's IsPrint, both sides, quoted; gojson_print_edges has them all.
	for i, r := range printEdges() {
		if i%8 == 0 {
			in = append(in, encodeRunes(r-1, r))
		}
	}
	rng := rand.New(rand.NewSource(20240101))
	pieces := []string{"a", "Z", " ", "\"", "\\", "<", "&", "\n", "\x00", "\x7f", "é",
		"\u2028", "\u00a0", "\u200b", "\U0001f600", "\U000e0001", "\ufffd", "/", "'"}
	for i := 0; i < 200; i++ {
		var b []byte
		n := rng.Intn(24)
		for j := 0; j < n; j++ {
			switch rng.Intn(3) {
			case 0:
				b = append(b, byte(rng.Intn(256)))
			case 1:
				b = append(b, pieces[rng.Intn(len(pieces))]...)
			default:
				b = utf8.AppendRune(b, rune(rng.Intn(unicode.MaxRune+1)))
			}
		}
		in = append(in, string(b))
	}
	return in
}

// printEdges lists each code point where unicode.IsPrint changes its answer (so r-1 and r
// differ), the places a range table could be off by one.
func printEdges() []rune {
	var edges []rune
	prev := false
	for r := rune(0); r <= unicode.MaxRune+1; r++ {
		p := r <= unicode.MaxRune && unicode.IsPrint(r)
		if p != prev && r > 0 {
			edges = append(edges, r)
		}
		prev = p
	}
	return edges
}

func emitPrintEdges() int {
	edges := printEdges()
	fmt.Fprintf(w, "static const GoPrintEdge gojson_print_edges[] = {\n")
	line := ""
	for _, r := range edges {
		item := fmt.Sprintf("{ 0x%06x, %d },", r, b2i(r <= unicode.MaxRune && unicode.IsPrint(r)))
		if line != "" && 8+len(line)+1+len(item) > 100 {
			fmt.Fprintf(w, "        %s\n", line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += item
	}
	fmt.Fprintf(w, "        %s\n};\n\n", line)
	return len(edges)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func emitStrings() int {
	in := stringInputs()
	fmt.Fprintf(w, "static const GoStringVector gojson_string_vectors[] = {\n")
	for _, s := range in {
		j, err := json.Marshal(s)
		if err != nil {
			panic(err)
		}
		q := strconv.Quote(s)
		q = q[1 : len(q)-1]
		nj, err := json.Marshal(q)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(w, "        { %s, %d,\n", cstr(s, 10), len(s))
		fmt.Fprintf(w, "          %s, %d,\n", cstr(string(j), 10), len(j))
		fmt.Fprintf(w, "          %s, %d,\n", cstr(q, 10), len(q))
		fmt.Fprintf(w, "          %s, %d },\n", cstr(string(nj), 10), len(nj))
	}
	fmt.Fprintf(w, "};\n\n")
	return len(in)
}

func emitUnquote() int {
	in := []string{
		"", "abc", `\x41`, `\xff`, `\xFF`, `\x4`, `\x`, `\xg0`, `\u00e9`, `\u00E9`, `\u12`,
		`\u12x4`, `\u`, `\U0001F600`, `\U0001f60`, `\U00110000`, `\U0010ffff`, `\ud800`,
		`\udfff`, `\uffff`, `\377`, `\400`, `\08`, `\7`, `\77`, `\000`, `\0`, `\a\b\f\n\r\t\v`,
		`\\`, `\"`, `\'`, `'`, `\q`, `\e`, `\N`, `\ `, "a\nb", "a\"b", `a\`, `\\\`, "\t\r",
		"\x00", "\x7f", "\xfe", "a\xffb", "\xe2\x82", "\xed\xa0\x80", "héllo", "\u2028",
		`\x00\x7f\x80`, `\u0000`, `\U00000041`, `\xc3\xa9`, `q\"uo\\te.txt`, `inv\xfe.txt`,
		`nbsp\u00a0x`, `\U000e0001`, "\\\n", `\` + "\xc3\xa9", `\0777`, `\12`,
	}
	fmt.Fprintf(w, "static const GoUnquoteVector gojson_unquote_vectors[] = {\n")
	for _, s := range in {
		out, err := strconv.Unquote(`"` + s + `"`)
		ok := 1
		if err != nil {
			ok, out = 0, ""
		}
		fmt.Fprintf(w, "        { %s, %d, %d, %s, %d },\n", cstr(s, 10), len(s), ok,
			cstr(out, 10), len(out))
	}
	fmt.Fprintf(w, "};\n\n")
	return len(in)
}

func timeInputs() []time.Time {
	zones := []*time.Location{
		time.UTC, time.FixedZone("", 3600), time.FixedZone("", -(5*3600 + 30*60)),
		time.FixedZone("", 5*3600+30*60), time.FixedZone("", 45*60), time.FixedZone("", 14*3600),
		time.FixedZone("", -12*3600), time.FixedZone("", -75), time.FixedZone("", 30),
		time.FixedZone("", -30), time.FixedZone("", 3600+59), time.FixedZone("", -(9*3600 + 59)),
	}
	nsecs := []int{0, 1, 10, 100, 1000, 120000000, 123456789, 123456780, 500000000, 999999999,
		100000000, 5000, 7}
	bases := []time.Time{
		time.Unix(0, 0),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 23, 59, 59, 0, time.UTC),
		time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC),
		time.Date(1600, 12, 31, 0, 0, 0, 0, time.UTC),
		// out of range: restic's FixTime moves the year to 0 or 9999
		time.Date(-5, 3, 4, 5, 6, 7, 0, time.UTC),
		time.Date(-4, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(10004, 2, 29, 1, 2, 3, 0, time.UTC),
		time.Date(12345, 6, 7, 8, 9, 10, 0, time.UTC),
		time.Date(-400000, 7, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(1<<40, 0),
		time.Unix(-(1 << 40), 0),
	}
	var ts []time.Time
	for i, b := range bases {
		for j, z := range zones {
			ts = append(ts, b.In(z))
			// Every base with every zone, but only a rotating few fractions each, so the
			// file stays readable while each fraction meets each zone somewhere.
			for k := 0; k < 3; k++ {
				ns := nsecs[(i*7+j*3+k)%len(nsecs)]
				ts = append(ts, b.Add(time.Duration(ns)).In(z))
			}
		}
	}
	rng := rand.New(rand.NewSource(1970))
	for i := 0; i < 100; i++ {
		sec := rng.Int63n(253402300800+62135596800) - 62135596800
		ts = append(ts, time.Unix(sec, rng.Int63n(1e9)).In(zones[rng.Intn(len(zones))]))
	}
	return ts
}

func emitTimes() int {
	ts := timeInputs()
	fmt.Fprintf(w, "static const GoTimeVector gojson_time_vectors[] = {\n")
	for _, t := range ts {
		_, off := t.Zone()
		text := fixTime(t).Format(time.RFC3339Nano)
		// Does Go read the text back as the very same instant and offset?
		rt := 0
		if p, err := time.Parse(time.RFC3339Nano, text); err == nil {
			_, poff := p.Zone()
			if p.Unix() == t.Unix() && p.Nanosecond() == t.Nanosecond() && poff == off {
				rt = 1
			}
		}
		fmt.Fprintf(w, "        { %dLL, %d, %d, %s, %d },\n", t.Unix(), t.Nanosecond(), off,
			cstr(text, 10), rt)
	}
	fmt.Fprintf(w, "};\n\n")
	return len(ts)
}

// Inputs on which our parser and Go's agree by design. Deliberate differences (lowercase 'z',
// more than nine fraction digits, ',' as the separator, offset hours above 23) are tested by
// hand in test-gojson.c.
func emitParse() int {
	in := []string{
		"2024-01-02T03:04:05Z", "2024-01-02T03:04:05.5+01:00", "2024-01-02T03:04:05.000000001Z",
		"2024-01-02T03:04:05.123456789-05:30", "2024-01-02T03:04:05-00:00",
		"0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
		"2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "1970-01-01T00:00:00+23:59",
		"1970-01-01T00:00:00-23:59", "1969-12-31T23:59:59.999999999Z", "2024-01-01T00:00:00.10Z",
		"2024-01-01T00:00:00.000Z", "2024-06-30T23:59:59+14:00",
		"2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z", "2024-01-00T00:00:00Z",
		"2024-01-32T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
		"2024-04-31T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z",
		"2024-01-01T00:00:60Z", "2024-01-01T00:00:00", "2024-01-01T00:00:00.Z",
		"2024-01-01T00:00:00.", "2024-01-01 00:00:00Z", "2024-1-01T00:00:00Z",
		"2024-01-01T00:00:00+0100", "2024-01-01T00:00:00+01", "2024-01-01T00:00:00+01:0",
		"2024-01-01T00:00:00Zjunk", "2024-01-01T00:00:00+01:00 ", "", "Z", "2024",
		" 2024-01-01T00:00:00Z", "+2024-01-01T00:00:00Z", "-001-01-01T00:00:00Z",
		"2024-01-01T00:00:00.-1Z", "2024-01-01T00:00:00.1a2Z", "2024-01-01T0a:00:00Z",
		"２０２４-01-01T00:00:00Z", "2024-01-01T00:00:00\x00Z", "2024-01-01T00:00:00.5+01:00Z",
	}
	fmt.Fprintf(w, "static const GoParseVector gojson_parse_vectors[] = {\n")
	for _, s := range in {
		ok, sec, nsec, off := 0, int64(0), 0, 0
		if p, err := time.Parse(time.RFC3339Nano, s); err == nil {
			ok, sec, nsec = 1, p.Unix(), p.Nanosecond()
			_, off = p.Zone()
		}
		fmt.Fprintf(w, "        { %s, %d, %d, %dLL, %d, %d },\n", cstr(s, 10), len(s), ok, sec,
			nsec, off)
	}
	fmt.Fprintf(w, "};\n")
	return len(in)
}

func main() {
	defer w.Flush()
	fmt.Fprintf(w, "/* SPDX-License-Identifier: LGPL-2.1-or-later */\n")
	fmt.Fprintf(w, "/*\n * Generated by scripts/gen-gojson-vectors.go with %s; do not edit.\n",
		runtime.Version())
	fmt.Fprintf(w, " * Each expected value is what Go itself produced for the input.\n */\n")
	fmt.Fprintf(w, "#pragma once\n\n#include <stddef.h>\n#include <stdint.h>\n\n")
	fmt.Fprintf(w, `/* json.Marshal(s); strconv.Quote(s) without its quotes; json.Marshal of that. */
typedef struct GoStringVector {
        const char *in;
        size_t in_len;
        const char *json;
        size_t json_len;
        const char *quote;
        size_t quote_len;
        const char *name_json;
        size_t name_json_len;
} GoStringVector;

/* unicode.IsPrint(cp) is print, and unicode.IsPrint(cp - 1) is not print. */
typedef struct GoPrintEdge {
        int32_t cp;
        int print;
} GoPrintEdge;

/* strconv.Unquote("\"" + in + "\""): ok, and then out. */
typedef struct GoUnquoteVector {
        const char *in;
        size_t in_len;
        int ok;
        const char *out;
        size_t out_len;
} GoUnquoteVector;

/* restic's FixTime(t).Format(time.RFC3339Nano); roundtrip: Go parses text back to t exactly. */
typedef struct GoTimeVector {
        int64_t sec;
        int32_t nsec;
        int32_t off;
        const char *text;
        int roundtrip;
} GoTimeVector;

/* time.Parse(time.RFC3339Nano, in): ok, and then the instant and the offset. */
typedef struct GoParseVector {
        const char *in;
        size_t in_len;
        int ok;
        int64_t sec;
        int32_t nsec;
        int32_t off;
} GoParseVector;

`)
	e := emitPrintEdges()
	// The tables keep one field per line for readability, not clang-format's packing.
	fmt.Fprintf(w, "/* clang-format off */\n")
	n := emitStrings()
	u := emitUnquote()
	t := emitTimes()
	p := emitParse()
	fmt.Fprintf(w, "/* clang-format on */\n")
	fmt.Fprintf(os.Stderr, "vectors: %d print edges, %d strings, %d unquote, %d times, %d parse\n",
		e, n, u, t, p)
}
