package relay

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// ErrState is returned for a state file that cannot be read or does not
// parse. relay never treats such a file as empty: that would forget the
// last accepted release and let a rollback through.
var ErrState = errors.New("unreadable state")

// State is what this data folder last accepted for one key and channel:
// the verification chain's memory against replays and rollbacks.
type State struct {
	Key     signer.PublicKey `json:"key"`
	Channel string           `json:"channel"`
	record.Accepted
	// Infohash is the accepted release's bundle.
	Infohash record.Infohash `json:"infohash"`
	// Packet is the accepted signed packet, kept so that a seeder can store
	// it again unchanged when the network has forgotten it.
	Packet *record.SignedPacket `json:"-"`
	// Updated is when this state was written.
	Updated time.Time `json:"updated"`
}

type stateFile struct {
	State
	Body string `json:"packet,omitempty"`
	// BodyKey is the key that signed Body when it is not State.Key: the
	// current root, after the followed key rotated to a successor.
	BodyKey *signer.PublicKey `json:"packet_key,omitempty"`
}

// stateStore keeps State files under <data dir>/state/<key>/<channel>.json.
type stateStore struct {
	dir string
}

func newStateStore(dataDir string) stateStore {
	return stateStore{dir: filepath.Join(dataDir, "state")}
}

func (s stateStore) path(key signer.PublicKey, channel string) string {
	return filepath.Join(s.dir, key.String(), channel+".json")
}

// Load returns the state of key and channel; a zero State (with Key and
// Channel set) when nothing was accepted yet.
func (s stateStore) Load(key signer.PublicKey, channel string) (State, error) {
	if err := record.ValidChannel(channel); err != nil {
		return State{}, err
	}
	p := s.path(key, channel)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return State{Key: key, Channel: channel}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrState, err)
	}
	return decodeState(key, channel, p, data)
}

// decodeState decodes the state file p of key and channel, which holds
// data.
func decodeState(key signer.PublicKey, channel, p string, data []byte) (State, error) {
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return State{}, fmt.Errorf("%w: %s: %v", ErrState, p, err)
	}
	if f.Key != key || f.Channel != channel {
		return State{}, fmt.Errorf("%w: %s holds the state of %s/%s", ErrState, p, f.Key, f.Channel)
	}
	st := f.State
	if f.Body != "" {
		body, err := hex.DecodeString(f.Body)
		signedBy := key
		if f.BodyKey != nil {
			signedBy = *f.BodyKey
		}
		if err == nil {
			st.Packet, err = record.ParseBody(signedBy, body)
		}
		if err != nil {
			return State{}, fmt.Errorf("%w: %s: packet: %v", ErrState, p, err)
		}
		if st.Packet.Seq != st.Seq {
			return State{}, fmt.Errorf("%w: %s: packet seq %d differs from accepted seq %d", ErrState, p, st.Packet.Seq, st.Seq)
		}
	}
	return st, nil
}

// encodeState encodes st as a state file.
func encodeState(st State) ([]byte, error) {
	f := stateFile{State: st}
	if st.Packet != nil {
		f.Body = hex.EncodeToString(st.Packet.Body())
		if st.Packet.Key != st.Key {
			f.BodyKey = &st.Packet.Key
		}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode state: %w", err)
	}
	return data, nil
}

// Save writes st atomically.
func (s stateStore) Save(st State) error {
	data, err := encodeState(st)
	if err != nil {
		return err
	}
	p := s.path(st.Key, st.Channel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("failed to save state: %w", err)
	}
	if err := atomicfile.WriteFile(p, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("failed to save state: %w", err)
	}
	return nil
}

// List returns every state in the store, sorted by key and channel. A
// file that does not load is returned as an error after the others.
func (s stateStore) List() ([]State, error) {
	keys, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	}
	var out []State
	var errs []error
	for _, kd := range keys {
		key, err := signer.ParsePublicKey(kd.Name())
		if err != nil || !kd.IsDir() {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(s.dir, kd.Name(), "*.json"))
		slices.Sort(files)
		for _, f := range files {
			ch := filepath.Base(f)
			ch = ch[:len(ch)-len(".json")]
			if record.ValidChannel(ch) != nil {
				continue
			}
			st, err := s.Load(key, ch)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, st)
		}
	}
	return out, errors.Join(errs...)
}
