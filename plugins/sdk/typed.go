package sdk

// Payload decodes the job's payload into a new T. Like Call.Decode, a
// payload that does not decode is a Fail error: return it.
func Payload[T any](c *Call) (T, error) {
	var v T
	err := c.Decode(&v)
	return v, err
}

// State loads the entity's state into a new T; the zero T when the entity
// has no state yet.
func State[T any](c *Call) (T, error) {
	var v T
	_, err := c.Load(&v)
	return v, err
}

// Typed turns a function of the decoded payload and the current state,
// returning the new state, into a HandlerFunc: it decodes P, loads S, calls
// fn and saves what fn returns. fn may still Emit and SetResult on c.
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
