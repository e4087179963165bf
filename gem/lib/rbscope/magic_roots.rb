# frozen_string_literal: true

module Rbscope
  # Per-process singletons registered by name: a snapshot stores a reference to one of them
  # as its name instead of copying it (Rails.application reaches nearly everything), and a
  # restore in a process that registered the same name gets that process's object back by
  # looking the name up here: nothing is evaluated. The Railtie registers Rails' own.
  #
  # A flat [name, object, name, object, ...] Array, so that the native agent reads it without
  # calling any Ruby method.
  MAGIC_ROOTS = []
  MAGIC_ROOTS_LOCK = Mutex.new
  MAX_MAGIC_ROOTS = 1000
  private_constant :MAGIC_ROOTS_LOCK

  class << self
    # Registers `object` as the magic root `name` (replacing an earlier one of that name).
    # `name` is a String or Symbol (at most 1000 bytes); at most MAX_MAGIC_ROOTS names.
    def magic_root(name, object)
      name = Args.text("Rbscope.magic_root(name)", name, expected: "a String or Symbol", symbol: true,
                                                         max: 1000, empty: false).dup.freeze
      MAGIC_ROOTS_LOCK.synchronize do
        i = MAGIC_ROOTS.each_slice(2).find_index { |n, _| n == name }
        if i
          MAGIC_ROOTS[(2 * i) + 1] = object
        elsif MAGIC_ROOTS.size >= 2 * MAX_MAGIC_ROOTS
          raise ArgumentError, "rbscope: Rbscope.magic_root keeps at most #{MAX_MAGIC_ROOTS} names; " \
                               "#{Args.shown(name)} is one too many"
        else
          MAGIC_ROOTS.push(name, object)
        end
      end
      object
    end

    # The object registered as `name` in this process, or nil.
    def magic_root_for(name)
      name = Args::SYMBOL_TO_S.bind_call(name) if Symbol === name
      return nil unless String === name

      MAGIC_ROOTS.each_slice(2) { |n, object| return object if n == name }
      nil
    end
  end
end
