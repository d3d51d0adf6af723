package worker

import (
	"context"
	"errors"
	"github.com/corralhq/corral/internal/routing"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// inventoryHandlers are the handlers of the declaration tests: stock.*
// declare entity inventory, order.reserved is internal.
var inventoryHandlers = map[string]host.HandlerInfo{
	"stock.add":      {Plugin: "inv", Entity: "inventory", PayloadShape: `{"qty":"integer"}`},
	"stock.reserve":  {Plugin: "inv", Entity: "inventory"},
	"order.reserved": {Plugin: "inv", Entity: "order", Internal: true},
}

// declWorker is a worker, not started, serving inventoryHandlers; its
// Redis is never reached by these tests.
func declWorker(t *testing.T) *Worker {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { rdb.Close() })
	cfg := DefaultConfig()
	cfg.ID = "w-decl"
	w, err := New(cfg, rdb, nil, staticHandlers{hs: inventoryHandlers}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestDeclaredEntityIsUsed: a job of a handler that declares its entity
// is sent that entity's state, and its new state is written there.
func TestDeclaredEntityIsUsed(t *testing.T) {
	t.Parallel()
	entities := entityOf(inventoryHandlers)
	stream := []store.Job{{ID: "a", Handler: "stock.add", Key: "sku-1", Attempt: 1, StreamID: "1-0"}}
	inv := store.EntityRef{Type: "inventory", Key: "sku-1"}
	snap := store.Snapshot{States: map[store.EntityRef][]byte{inv: []byte(`{"on_hand":3}`)}}
	wk := planWork(nil, stream, snap)
	req := buildRequest(wk.runnable(), snap, entities)
	if len(req.Entities) != 1 || req.Entities[0].Type != "inventory" || string(req.Entities[0].State) != `{"on_hand":3}` {
		t.Fatalf("request entities %v, want inventory sku-1 with its state", req.Entities)
	}
	out := map[string]*pluginpb.Outcome{"a": {JobId: "a", Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte(`{"on_hand":5}`)}}
	b, err := buildBatch(wk, out, retryPolicy{maxAttempts: func(store.Job) int { return 3 }}, entities)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.States) != 1 || b.States[0].Entity != inv {
		t.Fatalf("state writes %+v, want one to inventory sku-1", b.States)
	}
	if got := entities("nope.run"); got != "nope" {
		t.Errorf("entity of an unserved handler = %q, want its name's prefix", got)
	}
}

// TestGetStateOfUnknownEntity: asking for an entity no handler declares
// fails, naming the entities the handlers do declare.
func TestGetStateOfUnknownEntity(t *testing.T) {
	t.Parallel()
	api := declWorker(t).API()
	_, err := api.GetState(context.Background(), &workerpb.GetStateRequest{Entity: "stock", Keys: []string{"sku-1"}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `unknown entity "stock" (this cluster's entities: inventory, order)`) {
		t.Fatalf("GetState(stock) = %v, want NotFound naming inventory and order", err)
	}
	_, err = api.GetState(context.Background(), &workerpb.GetStateRequest{Keys: []string{"sku-1"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "inventory, order") {
		t.Fatalf("GetState without an entity = %v, want InvalidArgument naming the entities", err)
	}
}

// TestInternalHandlerRefused: Submit and Call refuse a job for an internal
// handler with a sentence that says why, and nothing is enqueued; the
// handler is not offered to a submitter who misspells another.
func TestInternalHandlerRefused(t *testing.T) {
	t.Parallel()
	api := declWorker(t).API()
	ctx := context.Background()
	const want = "handler order.reserved is internal: only other handlers may emit it"
	job := &workerpb.Job{Id: "o-1", Handler: "order.reserved", Key: "order-1", Payload: []byte(`{"sku":"s","qty":1}`)}
	resp, err := api.Submit(ctx, &workerpb.SubmitRequest{Jobs: []*workerpb.Job{job}})
	if err != nil || len(resp.Results) != 1 || resp.Results[0].Error != want {
		t.Fatalf("Submit = %v %v, want the job refused: %s", resp, err, want)
	}
	_, err = api.Call(ctx, &workerpb.CallRequest{Job: job, TimeoutMs: 2000})
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
		t.Fatalf("Call = %v, want InvalidArgument: %s", err, want)
	}
	resp, err = api.Submit(ctx, &workerpb.SubmitRequest{Jobs: []*workerpb.Job{{Id: "x-1", Handler: "order.reserve", Key: "k"}}})
	if err != nil || !strings.Contains(resp.Results[0].Error, "(this cluster serves: stock.add, stock.reserve)") {
		t.Fatalf("Submit of an unknown handler = %v %v, want the public handlers listed", resp, err)
	}
	if err := api.intake.validate(job, job.Id, inventoryHandlers); !errors.Is(err, ErrInternalHandler) {
		t.Fatalf("validate = %v, want ErrInternalHandler", err)
	}
}

type reserveStock struct {
	Qty   int64   `json:"qty"`
	Order string  `json:"order"`
	Price float64 `json:"price"`
	Note  string  `json:"note,omitempty"`
}

// TestShapeAgreesWithSDKDecoder: a payload the worker accepts for a
// handler whose shape the SDK derived from a struct decodes in that
// handler; numbers the decoder cannot take and misspelled fields are
// refused at submit, naming the field.
func TestShapeAgreesWithSDKDecoder(t *testing.T) {
	t.Parallel()
	p := sdk.New("inv", "1", sdk.Handler("stock.reserve", sdk.Typed(func(c *sdk.Call, in reserveStock, s struct{}) (struct{}, error) {
		return s, nil
	}), sdk.ShapeOf[reserveStock]()))
	desc, err := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	spec := desc.GetHandlers()[0]
	shape := shapeOf(shapeDecl{required: spec.GetPayloadShape(), optional: spec.GetPayloadOptional(), closed: spec.GetPayloadClosed()})
	for payload, refused := range map[string]string{
		`{"qty":3,"order":"o-1","price":2}`:                        "",
		`{"qty":-9223372036854775808,"order":"o-1","price":1e300}`: "",
		`{"qty":3,"order":"o-1","price":2.5,"note":"gift"}`:        "",
		`{"qty":3,"order":"o-1","price":2.5,"note":null}`:          "",
		`{"qty":1e3,"order":"o-1","price":2}`:                      `field "qty" is 1e3, a number with a fraction or an exponent; want integer`,
		`{"qty":99999999999999999999,"order":"o-1","price":2}`:     `field "qty" is 99999999999999999999, a number outside the int64 range; want integer`,
		`{"qty":3.0,"order":"o-1","price":2}`:                      `field "qty" is 3.0, a number with a fraction or an exponent; want integer`,
		`{"qty":3,"order":"o-1","price":1e999}`:                    `field "price" is 1e999, a number outside the float64 range; want number`,
		`{"qty":3,"order":"o-1","price":2,"qtty":4}`:               `field "qtty" is not one the handler takes (it takes: note, order, price, qty)`,
		`{"qty":3,"order":"o-1","price":2,"note":7}`:               `field "note" is 7, an integer; want string`,
	} {
		err := checkPayload([]byte(payload), 1<<20, shape)
		if refused != "" {
			if err == nil || !strings.Contains(err.Error(), refused) {
				t.Errorf("payload %s: %v, want it refused: %s", payload, err, refused)
			}
			continue
		}
		if err != nil {
			t.Errorf("payload %s refused: %v", payload, err)
			continue
		}
		resp, err := p.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{
			{Id: "j", Handler: "stock.reserve", Key: "sku-1", Payload: []byte(payload), Attempt: 1}}})
		if err != nil || resp.Outcomes[0].Status != pluginpb.Outcome_OK {
			t.Errorf("payload %s accepted at submit but not decoded: %v %v", payload, resp.GetOutcomes(), err)
		}
	}
}

// TestRejectedFinishesTheJob: a rejected job is finished with its reason,
// commits no state, result or emits, is neither retried nor dead-lettered,
// lets its key's next job run, and wakes its caller with REJECTED.
func TestRejectedFinishesTheJob(t *testing.T) {
	t.Parallel()
	stream := []store.Job{
		{ID: "a", Handler: "stock.reserve", Key: "k", Attempt: 1, StreamID: "1-0"},
		{ID: "b", Handler: "stock.reserve", Key: "k", Attempt: 1, StreamID: "2-0"},
	}
	parked := store.KeyRun{Key: "h", Jobs: []store.Job{{ID: "c", Handler: "stock.reserve", Key: "h", Attempt: 2}}}
	wk := planWork([]store.KeyRun{parked}, stream, store.Snapshot{Finished: map[string]bool{}, Held: map[string]bool{"h": true}})
	out := map[string]*pluginpb.Outcome{
		"a": {JobId: "a", Status: pluginpb.Outcome_REJECTED, Error: "out of stock: 3 left", StateChanged: true, State: []byte(`{"on_hand":-2}`),
			Result: []byte(`"no"`), Emits: []*pluginpb.Emit{{Handler: "order.reserved", Key: "o"}}},
		"b": {JobId: "b", Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte(`{"on_hand":1}`)},
		"c": {JobId: "c", Status: pluginpb.Outcome_REJECTED, Error: "order cancelled"},
	}
	b, err := buildBatch(wk, out, retryPolicy{maxAttempts: func(store.Job) int { return 1 }}, entityOf(inventoryHandlers))
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Rejection{{JobID: "c", Attempts: 2, Reason: "order cancelled"}, {JobID: "a", Attempts: 1, Reason: "out of stock: 3 left"}}
	if len(b.Rejected) != 2 || b.Rejected[0] != want[0] || b.Rejected[1] != want[1] {
		t.Fatalf("rejected %+v, want %+v", b.Rejected, want)
	}
	if len(b.Dead) != 0 || len(b.Retries) != 0 || len(b.Results) != 0 || len(b.Emits) != 0 {
		t.Fatalf("a rejection left dead %v, retries %v, results %v or emits %v", b.Dead, b.Retries, b.Results, b.Emits)
	}
	if len(b.Done) != 1 || b.Done[0] != "b" || len(b.States) != 1 || string(b.States[0].Value) != `{"on_hand":1}` {
		t.Fatalf("done %v states %+v, want b done with its own state only", b.Done, b.States)
	}
	if !slices.Contains(b.Unparked, "c") {
		t.Fatalf("unparked %v, want the parked c dropped", b.Unparked)
	}
	var calls callWaiters
	done, cancel := calls.wait("a")
	defer cancel()
	calls.committed(b)
	if r := <-done; r.State != workerpb.JobResult_REJECTED || r.Error != "out of stock: 3 left" || !finished(r) {
		t.Fatalf("caller woken with %v, want REJECTED with the reason", r)
	}
}

// TestEmitToInternalHandler: an internal handler is refused at submit,
// but a job may emit to it, whether this worker or another serves it; the
// emit check that fails an attempt for an unknown handler lets it through.
func TestEmitToInternalHandler(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(10_000_000)
	e := &executor{cfg: DefaultConfig(), plugins: staticHandlers{hs: inventoryHandlers}}
	rp := e.batchPolicy(now, inventoryHandlers)
	rp.maxAttempts = func(store.Job) int { return 3 }
	stream := []store.Job{{ID: "r1", Handler: "stock.reserve", Key: "sku-1", Attempt: 1, StreamID: "1-0"}}
	out := map[string]*pluginpb.Outcome{"r1": {JobId: "r1", Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte(`{"on_hand":1}`),
		Emits: []*pluginpb.Emit{{Handler: "order.reserved", Key: "o-1", Payload: []byte(`{"sku":"sku-1","qty":2}`)}}}}
	b, err := buildBatch(planWork(nil, stream, store.Snapshot{}), out, rp, entityOf(inventoryHandlers))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Done) != 1 || len(b.Retries) != 0 || len(b.Emits) != 1 || b.Emits[0].Handler != "order.reserved" {
		t.Fatalf("done %v retries %+v emits %+v, want r1 done with its emit to the internal handler", b.Done, b.Retries, b.Emits)
	}

	// Served by another worker only.
	view := newMembership(Config{ID: "w2"}, slog.New(slog.DiscardHandler))
	meta, err := localSet(inventoryHandlers).Meta()
	if err != nil {
		t.Fatal(err)
	}
	view.handlers.Store(readHandlers(membersWithMeta(map[string]map[string]string{"w1": meta})))
	local := map[string]host.HandlerInfo{"donor.donate": {Plugin: "donations", Version: "1", Entity: "donor"}}
	e2 := &executor{cfg: DefaultConfig(), plugins: staticHandlers{hs: local},
		catalog: &handlerCatalog{self: "w2", local: staticHandlers{hs: local}, view: view}}
	if err := e2.batchPolicy(now, local).checkEmit("d1", "order.reserved"); err != nil {
		t.Fatalf("emit to w1's internal handler from w2: %v", err)
	}
}

// TestRejectedJobOfAServedHandlerBesideAWaitingOne: in one batch, a job
// whose handler this worker lacks waits (parked, no attempt spent, its
// key held) while a rejection of another key finishes with its reason;
// the waiting job's key's later jobs wait behind it, and a rejection on
// the same key before it lets the wait begin at the next job.
func TestRejectedJobOfAServedHandlerBesideAWaitingOne(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(10_000_000)
	stream := []store.Job{
		{ID: "a", Handler: "stock.reserve", Key: "k1", Attempt: 1, StreamID: "1-0"},
		{ID: "b", Handler: "order.cancel", Key: "k1", Attempt: 1, StreamID: "2-0"}, // not served here
		{ID: "c", Handler: "stock.reserve", Key: "k1", Attempt: 1, StreamID: "3-0"},
		{ID: "d", Handler: "stock.reserve", Key: "k2", Attempt: 2, StreamID: "4-0"},
	}
	wk := planWork(nil, stream, store.Snapshot{})
	run, outcomes := unserved(wk, inventoryHandlers)
	if ids := jobIDs(run); strings.Join(ids, ",") != "a,d" {
		t.Fatalf("jobs run %v, want a and d (b waits, c behind it)", ids)
	}
	outcomes["a"] = &pluginpb.Outcome{JobId: "a", Status: pluginpb.Outcome_REJECTED, Error: "out of stock: 0 left"}
	outcomes["d"] = &pluginpb.Outcome{JobId: "d", Status: pluginpb.Outcome_REJECTED, Error: "order cancelled"}
	b, err := buildBatch(wk, outcomes, testPolicy(now), entityOf(inventoryHandlers))
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Rejection{{JobID: "a", Attempts: 1, Reason: "out of stock: 0 left"}, {JobID: "d", Attempts: 2, Reason: "order cancelled"}}
	if !slices.Equal(b.Rejected, want) {
		t.Fatalf("rejected %+v, want %+v", b.Rejected, want)
	}
	if len(b.Dead) != 0 || len(b.Done) != 0 || len(b.Retries) != 0 {
		t.Fatalf("dead %+v done %v retries %+v, want none", b.Dead, b.Done, b.Retries)
	}
	if len(wk.waiting) != 1 || wk.waiting[0].ID != "b" || wk.waiting[0].Attempt != 1 || wk.waiting[0].WaitingSince != now.UnixMilli() {
		t.Fatalf("waiting %+v, want b at attempt 1, waiting since now", wk.waiting)
	}
	var park *store.KeyPlan
	for i, kp := range b.Keys {
		if kp.Key == "k1" {
			park = &b.Keys[i]
		}
	}
	if park == nil || park.Park == nil || park.Park.ID != "b" || len(park.Front)+len(park.Back) != 1 || append(park.Front, park.Back...)[0].ID != "c" {
		t.Fatalf("key plans %+v, want k1 held by b with c behind it", b.Keys)
	}
}

// TestHostQueriesKnowTheClusterEntities: the query service lists no entity
// type until it is given a worker, then that worker's.
func TestHostQueriesKnowTheClusterEntities(t *testing.T) {
	t.Parallel()
	w := declWorker(t)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { rdb.Close() })
	q := NewHostQueries(rdb, routing.New(16))
	if es := q.KnownEntities(); len(es) != 0 {
		t.Fatalf("entities before a worker is given: %v", es)
	}
	q.ServeEntitiesOf(w)
	if es := strings.Join(q.KnownEntities(), ","); es != "inventory,order" {
		t.Fatalf("entities = %s, want inventory,order", es)
	}
}
