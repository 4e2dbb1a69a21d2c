package bpftest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ThreadCaps calls check with the effective, permitted and inheritable
// capability sets of every thread of process pid ("self" for this one),
// read from /proc, and returns the first error, naming its thread.
// Capabilities are per thread, and warden raises and drops them on all.
func ThreadCaps(pid string, check func(eff, prm, inh uint64) error) error {
	dir := filepath.Join("/proc", pid, "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "status"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended
		}
		if err != nil {
			return err
		}
		sets := map[string]uint64{}
		for _, line := range strings.Split(string(b), "\n") {
			name, hex, ok := strings.Cut(line, ":\t")
			if ok && (name == "CapEff" || name == "CapPrm" || name == "CapInh") {
				if sets[name], err = strconv.ParseUint(hex, 16, 64); err != nil {
					return fmt.Errorf("task %s: %s: %w", task.Name(), line, err)
				}
			}
		}
		if len(sets) != 3 {
			return fmt.Errorf("task %s: no capability sets in its status", task.Name())
		}
		if err := check(sets["CapEff"], sets["CapPrm"], sets["CapInh"]); err != nil {
			return fmt.Errorf("thread %s: %w", task.Name(), err)
		}
	}
	return nil
}

// HeldCapabilities returns an error naming a thread of process pid that
// holds a capability in its effective, permitted or inheritable set.
func HeldCapabilities(pid string) error {
	return ThreadCaps(pid, func(eff, prm, inh uint64) error {
		if eff|prm|inh != 0 {
			return fmt.Errorf("CapEff %x CapPrm %x CapInh %x", eff, prm, inh)
		}
		return nil
	})
}
