package sdk

// Payload decodes the job's payload into a new T with Call.Decode and
// returns it:
//
//	d, err := sdk.Payload[Donation](c)
//	if err != nil {
//		return err // the payload will never decode: dead-lettered
//	}
//
// As with Decode, the error for a payload that does not decode is marked
// with Fail: return it as is and the job is dead-lettered.
func Payload[T any](c *Call) (T, error) {
	var v T
	err := c.Decode(&v)
	return v, err
}

// State loads the state of the job's entity into a new T with Call.Load
// and returns it: the zero T when the entity has no state yet. Use Load
// instead to tell "no state" from a zero state, or to start from defaults
// that are not zero.
//
// As with Load, a state that does not unmarshal into T is an error that
// retries the job. State only reads: Call.Save writes.
func State[T any](c *Call) (T, error) {
	var v T
	_, err := c.Load(&v)
	return v, err
}

// Typed turns fn, a function of the decoded payload and the current state
// that returns the new state, into a HandlerFunc. The HandlerFunc decodes
// a P (Payload), loads an S (State), calls fn, and saves what fn returns
// (Call.Save) when fn returns a nil error. fn may also use c for anything
// else: Emit, SetResult, Query, Logger.
//
// An error fn returns decides the job's fate as for any handler (see
// HandlerFunc), and nothing is saved; so do the errors of decoding (Fail)
// and loading (retry). Typed saves on every success, even a state that did
// not change; a handler that only reads should be a plain HandlerFunc.
//
//	sdk.Handler("counter.add", sdk.Typed(func(c *sdk.Call, in Add, s Counter) (Counter, error) {
//		s.Total += in.N
//		return s, nil
//	}))
func Typed[P, S any](fn func(c *Call, payload P, state S) (S, error)) HandlerFunc {
	return func(c *Call) error {
		p, err := Payload[P](c)
		if err != nil {
			return err
		}
		s, err := State[S](c)
		if err != nil {
			return err
		}
		next, err := fn(c, p, s)
		if err != nil {
			return err
		}
		return c.Save(next)
	}
}
