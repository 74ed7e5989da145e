package flash

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// journalState is what a job writes to its state directory at each phase:
// enough for the next run to know that the ECU may hold a half-written
// slot or an activated image of this target.
type journalState struct {
	ECU     string    `json:"ecu"`
	Target  string    `json:"target"` // sha256:<hex> of the image
	Phase   Phase     `json:"phase"`
	Updated time.Time `json:"updated"`
}

// journal is one ECU's journal file, <StateDir>/<ecu>.json.
type journal struct {
	path  string // "" keeps none
	state journalState
}

// openJournal reads the ECU's journal, if any.
func openJournal(dir, ecu string) (*journal, error) {
	j := &journal{state: journalState{ECU: ecu}}
	if dir == "" {
		return j, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("flash: state directory: %w", err)
	}
	j.path = filepath.Join(dir, ecu+".json")
	b, err := os.ReadFile(j.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return j, nil
	case err != nil:
		return nil, fmt.Errorf("flash: journal: %w", err)
	}
	if err := json.Unmarshal(b, &j.state); err != nil || j.state.ECU != ecu {
		// A torn or foreign journal says nothing reliable; the ECU's own
		// slot state decides, so start afresh.
		j.state = journalState{ECU: ecu}
	}
	return j, nil
}

// save writes the state atomically: a temporary file, synced, renamed
// over the journal, so a crash leaves the old state or the new one.
func (j *journal) save() error {
	if j.path == "" {
		return nil
	}
	j.state.Updated = time.Now().UTC()
	b, err := json.Marshal(j.state)
	if err != nil {
		return err
	}
	tmp := j.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("flash: journal: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err != nil {
		return fmt.Errorf("flash: journal: %w", err)
	}
	return nil
}

// remove deletes the journal of a finished job.
func (j *journal) remove() error {
	if j.path == "" {
		return nil
	}
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("flash: journal: %w", err)
	}
	return nil
}
