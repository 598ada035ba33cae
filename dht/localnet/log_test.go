package localnet_test

import (
	"context"
	"log/slog"
	"strings"
)

type onlyLocalnet struct{ slog.Handler }

func (h *onlyLocalnet) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "localnet") {
		return h.Handler.Handle(ctx, r)
	}
	return nil
}
