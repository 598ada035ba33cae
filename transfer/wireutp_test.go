package transfer

import (
	"context"
	"errors"
	"net"
	"testing"
)

// noTCPDials is a Network whose TCP dials fail: a client on it reaches
// peers over uTP only.
type noTCPDials struct{}

func (noTCPDials) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, network, address)
}

func (noTCPDials) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, errors.New("no TCP dials here")
}

// TestWireUTP: with Config.UTP, a wire engine fetch whose TCP dials fail
// fetches over uTP from a seeder with Config.UTP on either engine, and
// has the same bytes.
func TestWireUTP(t *testing.T) {
	t.Parallel()
	for _, e := range []Engine{EngineTorrent, EngineWire} {
		t.Run("from "+e.String(), func(t *testing.T) {
			t.Parallel()
			s, b := seeder(t, map[string]int64{"app": 2<<20 + 12345}, Config{Engine: e, UTP: true})
			fetchSame(t, newClient(t, Config{Engine: EngineWire, UTP: true, Network: noTCPDials{}}), s, b)
		})
	}
}
