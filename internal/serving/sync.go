package serving

import (
	"context"
	"time"
)

// Sync applies the catalog's current contents: new and changed models
// load (changed versions swap in without dropping requests), models gone
// from the catalog unload. Models unloaded explicitly stay unloaded until
// loaded explicitly. Per-model failures are logged, not returned.
func (m *Manager) Sync(ctx context.Context) error {
	names, err := m.opts.Catalog.List(ctx)
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, name := range names {
		present[name] = true
		if e := m.entry(name, false); e != nil && e.snap.Load().unloaded {
			continue
		}
		if err := m.Load(ctx, name); err != nil {
			m.log.Debug("repository poll: model not fully loaded", "model", name, "err", err)
		}
	}
	m.mu.Lock()
	var gone []string
	for name := range m.models {
		if !present[name] {
			gone = append(gone, name)
		}
	}
	m.mu.Unlock()
	for _, name := range gone {
		if e := m.entry(name, false); e != nil && len(e.snap.Load().versions) == 0 {
			m.forget(name)
			continue
		}
		m.log.Info("model removed from the repository: unloading", "model", name)
		if err := m.Unload(ctx, name); err != nil {
			m.log.Warn("unloading removed model", "model", name, "err", err)
		}
		m.forget(name)
	}
	return nil
}

// forget drops a model the catalog no longer has (after it was unloaded).
func (m *Manager) forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.models[name]; e != nil && len(e.snap.Load().versions) == 0 {
		delete(m.models, name)
	}
}

// Poll calls Sync every interval until ctx ends.
func (m *Manager) Poll(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Sync(ctx); err != nil {
				m.log.Warn("repository poll", "err", err)
			}
		}
	}
}
