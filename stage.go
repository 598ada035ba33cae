package relay

import (
	"slices"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// Stage is a step of Fetch or Publish, reported as it begins to
// FetchOptions.OnStage and PublishOptions.OnStage, so that a person
// watching sees what relay is waiting on.
type Stage string

// The stages of a Fetch, in order (a fetch reports those it goes
// through), then those of a Publish.
const (
	// StageResolving: looking up the key's record in the DHT.
	StageResolving Stage = "resolving"
	// StageMetadata: finding peers, getting the torrent's info and
	// checking relay.json against the record.
	StageMetadata Stage = "metadata"
	// StageDownloading: getting the files; FetchOptions.Progress says how
	// far.
	StageDownloading Stage = "downloading"
	// StageVerifying: every byte is here; the last files' SHA-256 are
	// being checked (transfer.Progress.Checked).
	StageVerifying Stage = "verifying"
	// StagePlacing: writing the files into FetchOptions.Out.
	StagePlacing Stage = "placing"
	// StageInstalling: FetchOptions.Install runs.
	StageInstalling Stage = "installing"
	// StageDone: the release is verified, placed, installed and accepted.
	StageDone Stage = "done"

	// StageBundling: Publish makes the bundle: copies and hashes the files.
	StageBundling Stage = "bundling"
	// StageStoring: Publish signs the record and stores it in the DHT.
	StageStoring Stage = "storing"
)

var stageOrder = []Stage{StageResolving, StageMetadata, StageDownloading, StageVerifying, StagePlacing, StageInstalling, StageDone, StageBundling, StageStoring}

// stages reports the stages of one Fetch or Publish: each once, in order.
type stages struct {
	fn  func(Stage, record.Release)
	cur int
	rel record.Release
}

func newStages(fn func(Stage, record.Release)) *stages { return &stages{fn: fn, cur: -1} }

// enter reports s unless it, or a later stage, was reported already.
func (st *stages) enter(s Stage) {
	i := slices.Index(stageOrder, s)
	if st.fn == nil || i <= st.cur {
		return
	}
	st.cur = i
	st.fn(s, st.rel)
}

// progress returns a transfer progress callback that reports the
// download's stages and passes the progress on to fn.
func (st *stages) progress(fn func(transfer.Progress)) func(transfer.Progress) {
	if st.fn == nil {
		return fn
	}
	return func(p transfer.Progress) {
		switch {
		case p.Stage == transfer.StageInfo || p.Stage == transfer.StageManifest:
			st.enter(StageMetadata)
		case p.Stage == transfer.StageFiles:
			st.enter(StageDownloading)
			if p.Total > 0 && p.Done >= p.Total && p.Checked < p.Total {
				st.enter(StageVerifying)
			}
		}
		if fn != nil {
			fn(p)
		}
	}
}
