package transfer

import "github.com/relay-sh/relay/record"

// SourceFile is one file Make would bundle: where it is on disk, and how
// the manifest lists it (path, size, mode, platform; no SHA-256 yet).
type SourceFile struct {
	Src  string
	File record.File
}

// Collect lists the files Make would bundle from sources, in the bundle's
// order, with the same rules (key files and data folders left out and
// reported to leftOut, which may be nil; modes normalised; platforms
// recognised): for a caller that transforms the files before they are
// bundled, as an encrypted publish does.
func Collect(sources []Source, leftOut func(LeftOut)) ([]SourceFile, error) {
	if leftOut == nil {
		leftOut = func(LeftOut) {}
	}
	entries, err := collect(sources, leftOut)
	if err != nil {
		return nil, err
	}
	out := make([]SourceFile, len(entries))
	for i, e := range entries {
		out[i] = SourceFile{Src: e.src, File: e.file}
	}
	return out, nil
}
