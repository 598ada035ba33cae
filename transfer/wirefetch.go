package transfer

import (
	"context"
	"errors"

	"github.com/relay-sh/relay/record"
)

// fetch is Fetch on the wire engine.
func (w *wireClient) fetch(ctx context.Context, req FetchRequest) (*Fetched, error) {
	_ = record.ErrManifestMismatch
	return nil, errors.New("fetch: not on the wire engine yet")
}
