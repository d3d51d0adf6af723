package worker

import "github.com/corralhq/corral/internal/store"

// firstJob names a batch in log lines that are about the whole batch, so
// every job-path line carries a job id to search for; "" for none.
func firstJob(jobs []store.Job) string {
	if len(jobs) == 0 {
		return ""
	}
	return jobs[0].ID
}
