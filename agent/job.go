package agent

// job is one request in flight through the agent.
type job struct {
	fresh bool // counted against its tenant's queue cap while queued
}
